"""``settings.ENVROUTE`` and friends, read lazily on every access.

Nothing is copied at import time, so ``override_settings`` and pytest-django's
``settings`` fixture work; the gateway built from these values is dropped whenever one of
them changes (see :mod:`django_envroute.gateway`).

Settings:

``ENVROUTE``
    The configuration: the contract's TOML schema as a dict. Unless it sets
    ``store.url``, keys live in the project's database (``django://default``).
``ENVROUTE_EXEMPT_PATHS``
    Path prefixes the middleware lets through without a key, such as ``["/admin/"]``
    (default: none; every request needs a key). Such requests have ``request.envroute``
    set to None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings

#: Key store URL scheme for the Django ORM store: ``django://`` or ``django://<db alias>``.
STORE_SCHEME = "django"
DEFAULT_STORE_URL = "django://default"
MIDDLEWARE = "django_envroute.middleware.EnvRouteMiddleware"


class EnvrouteSettings:
    """Typed, lazy access to envroute's Django settings."""

    @property
    def ENVROUTE(self) -> object:
        return getattr(settings, "ENVROUTE", None)

    @property
    def ENVROUTE_EXEMPT_PATHS(self) -> object:
        return getattr(settings, "ENVROUTE_EXEMPT_PATHS", ())

    @property
    def config(self) -> dict[str, Any]:
        """``settings.ENVROUTE`` with the store defaulting to the project's database."""
        raw = self.ENVROUTE
        if not isinstance(raw, Mapping):
            raise TypeError("settings.ENVROUTE must be a dict (the envroute configuration)")
        data = dict(raw)
        store = data.get("store", {})
        if isinstance(store, Mapping):
            data["store"] = {"url": DEFAULT_STORE_URL, **store}
        return data

    @property
    def exempt_paths(self) -> tuple[str, ...]:
        value = self.ENVROUTE_EXEMPT_PATHS
        if isinstance(value, str) or not isinstance(value, Sequence):
            return ()
        return tuple(p for p in value if isinstance(p, str))


conf = EnvrouteSettings()
