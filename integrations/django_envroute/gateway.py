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

from envroute import ConfigError, EnvRouter, KeyManager
from envroute.stores.base import Change
from envroute.typing import StartResponse, WSGIEnvironment

from .conf import conf

_lock = threading.Lock()
_router: EnvRouter | None = None
#: The thread building the gateway, while it does: a module it imports (a backend's
#: ``app``) that asks for the gateway at import time would otherwise wait for itself.
_builder: int | None = None


def django_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Stands for the Django project as the backend ``app``; the middleware never calls it."""
    start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
    return [b"the backend 'app' is Django itself: use EnvRouteMiddleware\n"]


def get_router() -> EnvRouter:
    """The process's gateway; a :class:`envroute.ConfigError` if ``ENVROUTE`` is unusable."""
    global _router, _builder
    router = _router
    if router is None:
        if _builder == threading.get_ident():
            raise ConfigError("the gateway was asked for while it was being built: a module "
                              "it imports (a backend's app) asks for it at import time; "
                              "ask inside a function instead", source="settings.ENVROUTE")
        with _lock:
            router = _router
            if router is None:
                _builder = threading.get_ident()
                try:
                    router = _router = EnvRouter(django_app, conf.config)
                finally:
                    _builder = None
    return router


def get_key_manager() -> KeyManager:
    """The gateway's key lifecycle (``router.keys``): a change made through it is honoured
    by this process at once."""
    return get_router().keys


def forget_key(key_id: str) -> None:
    """Kept for callers written against 0.1: ``router.keys`` already tells this process
    (and the store tells the others) about every change it makes."""
    router = _router
    if router is not None:
        router.on_change(Change("key", key_id))


def reset_router() -> None:
    """Forget the gateway, so the next request builds it from the current settings."""
    global _router
    with _lock:
        router, _router = _router, None
    if router is not None:
        router.close()


def on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("ENVROUTE"):
        reset_router()
