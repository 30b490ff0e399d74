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


class CustomerNotFound(EnvrouteError):
    """0.2: a customer id that the store does not know (an operation, not a request)."""


class BackendNotFound(EnvrouteError):
    """0.2: a stored backend name that the store does not know (an operation)."""


class AlreadyExists(EnvrouteError):
    """0.2: creating a customer or stored backend whose id or name is taken (exit 1)."""


class BadRequestBody(EnvrouteError):
    """0.2: the caller's request body cannot be read (broken chunked encoding, a body
    shorter than its ``Content-Length``). Answered ``400 invalid_request``: the caller's
    fault, never blamed on a backend."""


class EnvironmentMismatch(EnvrouteError):
    """0.2 (§18): a request's code touched another environment's data.

    Answered as ``403 environment_mismatch``; ``django_envroute.db.CrossEnvironmentAccess``
    is a subclass, so every front end translates it in the one place problems are made.
    """


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
