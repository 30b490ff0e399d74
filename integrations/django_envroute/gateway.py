"""The one :class:`envroute.EnvRouter` a Django process uses, built on first use.

It is built from :mod:`django_envroute.conf` the first time a request, the admin or a
command needs it, and dropped when an ``ENVROUTE*`` setting changes (``override_settings``
in tests), so the next use sees the new configuration. The backend named ``app`` is the
Django project itself: the middleware hands those requests on to Django's views, so the
stand-in below is never called by the middleware.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from envroute import EnvRouter, KeyManager
from envroute.typing import StartResponse, WSGIEnvironment

from .conf import conf

_lock = threading.Lock()
_router: EnvRouter | None = None


def django_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Stands for the Django project as the backend ``app``; the middleware never calls it."""
    start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
    return [b"the backend 'app' is Django itself: use EnvRouteMiddleware\n"]


def get_router() -> EnvRouter:
    """The process's gateway; a :class:`envroute.ConfigError` if ``ENVROUTE`` is unusable."""
    global _router
    router = _router
    if router is None:
        with _lock:
            router = _router
            if router is None:
                router = _router = EnvRouter(django_app, conf.config)
    return router


def get_key_manager() -> KeyManager:
    """Key lifecycle (create, revoke, roll) under the project's configuration and store."""
    router = get_router()
    return KeyManager(router.store, router.settings)


def forget_key(key_id: str) -> None:
    """Drop this process's cached verdict for a key just revoked or rolled here.

    Other processes notice within ``[auth] cache_ttl`` (the ``django://`` store pushes no
    invalidations).
    """
    router = _router
    if router is not None:
        router.authenticator.api_keys.invalidate(key_id)


def reset_router() -> None:
    """Forget the gateway, so the next request builds it from the current settings."""
    global _router
    with _lock:
        router, _router = _router, None
    if router is not None:
        router.store.close()


def on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("ENVROUTE"):
        reset_router()
