"""envroute's own exceptions.

Lower-level errors (``sqlite3``, ``psycopg``, ``requests``, ``redis``, ``tomllib``) are
translated into these at the boundary where they happen, so the gateway needs to know
about exactly one family of errors, and :mod:`envroute.problems` turns each of them into
the contract's response in one place.
"""

from __future__ import annotations


class EnvrouteError(Exception):
    """Base class of every error envroute raises on purpose."""


class ConfigError(EnvrouteError):
    """The configuration is unusable; raised at start-up, never per request.

    The message always names where the configuration came from, the offending key (as a
    dotted path such as ``backends.sandbox.timeout``) and the reason, so one line on
    stderr is enough to fix it.
    """

    def __init__(self, reason: str, *, key: str = "", source: str = "<config>") -> None:
        self.reason = reason
        self.key = key
        self.source = source
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(f"{where}{reason}")


class StoreUnavailable(EnvrouteError):
    """The key store (or the rate-limit store) can't be reached or read.

    The gateway answers 503 ``store_unavailable`` and never routes: failing closed is
    the only safe answer when we cannot tell whether a key is revoked.
    """


class KeyNotFound(EnvrouteError):
    """A key id that the store does not know (a CLI or admin operation, not a request)."""


class BackendError(EnvrouteError):
    """A backend could not produce a response. Raised before ``start_response`` is called."""

    def __init__(self, message: str, *, backend: str = "") -> None:
        self.backend = backend
        super().__init__(message)


class BackendUnavailable(BackendError):
    """Connection refused or reset before a response started: 502, and failover may retry.

    ``retryable`` is False once any byte of the request body was sent upstream, because
    the body cannot be replayed and a request must never be sent twice.
    """

    def __init__(self, message: str, *, backend: str = "", retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message, backend=backend)


class BackendTimeout(BackendError):
    """The upstream was slower than the backend's ``timeout``: 504, never retried."""
