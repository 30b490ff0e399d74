"""The ``EnvRoute`` extension object: configuration, per-app state and the WSGI wrap.

It follows Flask's extension pattern (``docs/extensiondev.rst``): the object may be
created once and bound to many apps with :meth:`EnvRoute.init_app`, and everything
belonging to one app lives in ``app.extensions["envroute"]``, never on ``self``.

Configuration, first found wins: the ``config=`` given to the constructor or to
``init_app``, then ``app.config["ENVROUTE"]``. It is the contract's schema (the TOML
file as a dict, or a path to a TOML file), validated once here, so a broken config stops
the app at start-up with a :class:`envroute.ConfigError` naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask

from envroute import ConfigError, EnvRouter, KeyStore, Settings

from .state import EXTENSION_NAME, EnvRouteState, get_state

if TYPE_CHECKING:
    from envroute.typing import WSGIApplication

__all__ = ["EXTENSION_NAME", "EnvRoute", "EnvRouteState", "get_state"]

CONFIG_KEY = "ENVROUTE"

Config = Mapping[str, Any] | str | os.PathLike[str] | Settings


class EnvRoute:
    """Authenticate and route every request of a Flask app by its API key's metadata.

    ``backends`` adds in-process WSGI backends by name (``{"sandbox": mock_app}``), and
    ``store`` replaces the store that ``[store] url`` names (tests, custom stores).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        config: Config | None = None,
        backends: Mapping[str, WSGIApplication] | None = None,
        store: KeyStore | None = None,
    ) -> None:
        self.config = config
        self.backends = dict(backends or {})
        self.store = store
        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        *,
        config: Config | None = None,
        backends: Mapping[str, WSGIApplication] | None = None,
        store: KeyStore | None = None,
    ) -> None:
        """Validate the config, wrap ``app.wsgi_app`` and add the ``flask envroute`` commands."""
        if EXTENSION_NAME in app.extensions:
            raise RuntimeError(f"envroute is already initialised on the app {app.name!r}")
        chosen = config if config is not None else self.config
        if chosen is None:
            chosen = app.config.get(CONFIG_KEY)
        if chosen is None:
            raise ConfigError(f"set app.config[{CONFIG_KEY!r}] to envroute's configuration "
                              "(a dict in the TOML schema) or pass EnvRoute(config=...)",
                              source=f"Flask app {app.name!r}")
        router = EnvRouter(
            app.wsgi_app, chosen,
            backends={**self.backends, **(backends or {})},
            store=store if store is not None else self.store,
        )
        app.extensions[EXTENSION_NAME] = EnvRouteState(router)
        app.wsgi_app = router  # type: ignore[method-assign]

        from .commands import envroute_group
        from .converters import init_app as init_sandbox  # §18: envroute_id, 403/404 problems

        init_sandbox(app)

        if envroute_group.name not in app.cli.commands:
            app.cli.add_command(envroute_group)
