"""Per-app state of the extension: ``app.extensions["envroute"]``.

A module of its own so that the ``flask envroute`` commands and the extension both
import it, and neither imports the other at import time (0.1 had a commands <->
extension import circle).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from envroute import EnvRouter, KeyManager, KeyStore, Settings

EXTENSION_NAME = "envroute"


@dataclass(frozen=True)
class EnvRouteState:
    """What the extension keeps for one app: the gateway that wraps its ``wsgi_app``."""

    router: EnvRouter

    @property
    def settings(self) -> Settings:
        return self.router.settings

    @property
    def store(self) -> KeyStore:
        return self.router.store

    def key_manager(self) -> KeyManager:
        """Create, list, revoke and roll keys in this app's store (``router.keys``: a
        change is honoured by this process at once)."""
        return self.router.keys

    def close(self) -> None:
        """Release the gateway's pools, listeners and timers (when the app is done:
        tests, an app factory that builds apps repeatedly, a worker shutting down)."""
        self.router.close()


def get_state(app: Flask | None = None) -> EnvRouteState:
    """The extension's state for ``app`` (default: the current app)."""
    target = app if app is not None else current_app
    try:
        state: EnvRouteState = target.extensions[EXTENSION_NAME]
    except KeyError:
        raise RuntimeError("flask_envroute is not initialised on this app: "
                           "call EnvRoute(app) or EnvRoute().init_app(app)") from None
    return state
