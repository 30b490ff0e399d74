"""envroute: Stripe-style test/live API keys for any WSGI service.

A caller's API key (``sk_test_…``, ``sk_live_…``) or JWT is authenticated, its metadata
is attached to the WSGI environ as ``envroute.identity``, and the request is routed by
that metadata to a backend: an upstream URL through a streaming reverse proxy, or a WSGI
app in the same process. Start with :class:`EnvRouter`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .audit import Event
    from .customers import CustomerManager
    from .errors import (
        AlreadyExists,
        BackendNotFound,
        BackendTimeout,
        BackendUnavailable,
        BadRequestBody,
        ConfigError,
        CustomerNotFound,
        EnvironmentMismatch,
        EnvrouteError,
        KeyNotFound,
        StoreUnavailable,
    )
    from .gateway import EnvRouter
    from .guards import KeyUsageError
    from .identity import Identity
    from .lifecycle import IssuedKey, KeyManager
    from .problems import Problem
    from .settings import Settings
    from .signing import verify_signature
    from .stored_backends import BackendManager
    from .stores import KeyRecord, KeyStore, open_store, register_store

#: Where each public name lives. Imported on first use (PEP 562), so ``import envroute``
#: (the CLI does it for ``__version__``) doesn't load the gateway, the proxy, requests and
#: werkzeug for a command that only opens the store: issue 14's CLI start-up.
_HOMES = {
    "Event": "audit", "CustomerManager": "customers", "EnvRouter": "gateway",
    "Identity": "identity", "IssuedKey": "lifecycle", "KeyManager": "lifecycle",
    "KeyUsageError": "guards", "Problem": "problems", "Settings": "settings",
    "verify_signature": "signing", "BackendManager": "stored_backends",
    "KeyRecord": "stores", "KeyStore": "stores", "open_store": "stores",
    "register_store": "stores",
    **dict.fromkeys(("AlreadyExists", "BackendNotFound", "BackendTimeout",
                     "BackendUnavailable", "BadRequestBody", "ConfigError",
                     "CustomerNotFound", "EnvironmentMismatch", "EnvrouteError",
                     "KeyNotFound", "StoreUnavailable"), "errors"),
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'envroute' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "BackendManager",
    "BackendNotFound",
    "BackendTimeout",
    "BackendUnavailable",
    "BadRequestBody",
    "ConfigError",
    "CustomerManager",
    "CustomerNotFound",
    "EnvRouter",
    "EnvironmentMismatch",
    "EnvrouteError",
    "Event",
    "Identity",
    "IssuedKey",
    "KeyManager",
    "KeyNotFound",
    "KeyRecord",
    "KeyStore",
    "KeyUsageError",
    "Problem",
    "Settings",
    "StoreUnavailable",
    "__version__",
    "open_store",
    "register_store",
    "verify_signature",
]
