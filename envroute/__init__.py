"""envroute: Stripe-style test/live API keys for any WSGI service.

A caller's API key (``sk_test_…``, ``sk_live_…``) or JWT is authenticated, its metadata
is attached to the WSGI environ as ``envroute.identity``, and the request is routed by
that metadata to a backend: an upstream URL through a streaming reverse proxy, or a WSGI
app in the same process. Start with :class:`EnvRouter`.
"""

from __future__ import annotations

from .errors import (
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    EnvrouteError,
    KeyNotFound,
    StoreUnavailable,
)
from .gateway import EnvRouter
from .identity import Identity
from .lifecycle import IssuedKey, KeyManager, KeyUsageError
from .problems import Problem
from .settings import Settings
from .signing import verify_signature
from .stores import KeyRecord, KeyStore, open_store, register_store

__version__ = "0.1.0"

__all__ = [
    "BackendTimeout",
    "BackendUnavailable",
    "ConfigError",
    "EnvRouter",
    "EnvrouteError",
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
