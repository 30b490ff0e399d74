"""envroute: Stripe-style test/live API keys for any WSGI service.

A caller's API key (``sk_test_…``, ``sk_live_…``) or JWT is authenticated, its metadata
is attached to the WSGI environ as ``envroute.identity``, and the request is routed by
that metadata to a backend: an upstream URL through a streaming reverse proxy, or a WSGI
app in the same process. Start with :class:`EnvRouter`.
"""

from __future__ import annotations

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
from .identity import Identity
from .lifecycle import IssuedKey, KeyManager, KeyUsageError
from .problems import Problem
from .settings import Settings
from .signing import verify_signature
from .stored_backends import BackendManager
from .stores import KeyRecord, KeyStore, open_store, register_store

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
