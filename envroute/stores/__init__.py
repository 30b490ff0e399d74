"""Key stores, chosen by URL through :func:`open_store`.

``sqlite:///relative.db`` / ``sqlite:////absolute.db`` and ``postgresql://…``. A store's
client library is imported only when that store is built, so the core needs neither
psycopg nor Django. Integrations add schemes with :func:`register_store`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..errors import ConfigError
from .base import (
    AuditRecord,
    BackendRecord,
    Change,
    CustomerRecord,
    InvalidationSource,
    KeyRecord,
    KeyStore,
    SecretMatch,
    UsageBatch,
    UsageDay,
)

StoreFactory = Callable[[str], KeyStore]

#: scheme -> "module:attribute" of a callable taking the URL
_SCHEMES: dict[str, str] = {
    "sqlite": "envroute.stores.sqlite:SQLiteStore",
    "postgresql": "envroute.stores.postgres:PostgresStore",
    "postgres": "envroute.stores.postgres:PostgresStore",
}


def register_store(scheme: str, factory: str) -> None:
    """Make ``scheme://…`` URLs open the store at the import string ``factory``."""
    _SCHEMES[scheme] = factory


def registered_schemes() -> frozenset[str]:
    """The URL schemes :func:`open_store` can open (config validation checks against it)."""
    return frozenset(_SCHEMES)


def open_store(url: str) -> KeyStore:
    """The store for ``url``; a :class:`ConfigError` for a scheme nobody registered."""
    scheme = url.partition("://")[0]
    target = _SCHEMES.get(scheme)
    if target is None:
        known = ", ".join(sorted(f"{s}://" for s in _SCHEMES))
        raise ConfigError(f"unknown store scheme {scheme!r} (known: {known})", key="store.url")
    module_name, _, attribute = target.partition(":")
    try:
        factory: StoreFactory = getattr(importlib.import_module(module_name), attribute)
    except ImportError as exc:
        extra = "postgres" if scheme.startswith("postgres") else scheme
        raise ConfigError(f"the {scheme}:// store needs an extra: "
                          f"pip install 'envroute[{extra}]' ({exc})", key="store.url") from None
    return factory(url)


__all__ = ["AuditRecord", "BackendRecord", "Change", "CustomerRecord", "InvalidationSource",
           "KeyRecord", "KeyStore", "SecretMatch", "UsageBatch", "UsageDay", "open_store",
           "register_store", "registered_schemes"]
