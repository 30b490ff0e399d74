"""The environment fence: which environment's data the running code may touch (§18).

One app can serve sandbox and production from one codebase when each environment has its
own database and nothing lets a request of one reach the other's. The framework parts
(``django_envroute.db``, ``flask_envroute.db``) decide *which* database; this module
holds the one piece of state they share, per thread and per ``contextvars`` context:

- during a request envroute admitted, the environment is the identity's (read lazily
  from the WSGI environ, so it is known as soon as the gateway has authenticated);
- :func:`using_environment` chooses one explicitly for a block of code (a script, a
  task, a test);
- otherwise there is none, and the fence stays out of the way (migrations, the shell).

Risk: the fence only sees what goes through the framework's database layer. SQL sent
through a connection the app opens itself, a cache keyed without the environment, files
and queues are outside it (docs/sandbox-data.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass

from .errors import EnvironmentMismatch
from .identity import Identity
from .names import IDENTITY_KEY
from .typing import WSGIEnvironment


class CrossEnvironmentAccess(EnvironmentMismatch):
    """Code running for one environment touched another environment's database.

    An :class:`~envroute.errors.EnvironmentMismatch`, so every front end answers it as
    ``403 environment_mismatch``. Raised *before* the query runs: nothing was read from,
    or written to, the other database.
    """


@dataclass(frozen=True)
class _Scope:
    environ: WSGIEnvironment | None = None
    environment: str | None = None

    def name(self) -> str | None:
        if self.environment is not None:
            return self.environment
        identity = self.environ.get(IDENTITY_KEY) if self.environ is not None else None
        return identity.environment if isinstance(identity, Identity) else None


_scope: ContextVar[_Scope | None] = ContextVar("envroute_fence", default=None)


def current_environment() -> str | None:
    """The environment the running code works for, or ``None`` (no fence)."""
    scope = _scope.get()
    return scope.name() if scope is not None else None


def request_environment() -> str | None:
    """The environment of the admitted request being handled, or ``None``."""
    scope = _scope.get()
    if scope is None or scope.environ is None:
        return None
    identity = scope.environ.get(IDENTITY_KEY)
    return identity.environment if isinstance(identity, Identity) else None


def request_environ() -> WSGIEnvironment | None:
    """The environ of the request being handled (admitted or not), or ``None``."""
    scope = _scope.get()
    return scope.environ if scope is not None else None


def enter_request(environ: WSGIEnvironment) -> Token[_Scope | None]:
    """Bind the fence to a request; the environment follows once the gateway admits it.

    Called when a request starts (before authentication), so whatever the previous
    request on this thread left behind is replaced, never inherited.
    """
    return _scope.set(_Scope(environ=environ))


def leave_request(token: Token[_Scope | None] | None = None) -> None:
    """Unbind the fence at the end of a request."""
    if token is not None:
        _scope.reset(token)
    else:
        _scope.set(None)


def check_switch(name: str, held: str | None) -> None:
    """Refuse to leave the request's environment: that would be the fence's back door."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an environment name is required, not {name!r}")
    if held is not None and held != name:
        raise CrossEnvironmentAccess(f"code running for a {held} request cannot switch to "
                                     f"the {name} environment")


@contextmanager
def using_environment(name: str) -> Iterator[None]:
    """Run a block as ``name``'s code: its database, and no other environment's.

    Inside a request envroute admitted, only the request's own environment may be
    chosen (anything else raises :class:`CrossEnvironmentAccess`).
    """
    check_switch(name, request_environment())
    scope = _scope.get()
    token = _scope.set(_Scope(environ=scope.environ if scope else None, environment=name))
    try:
        yield
    finally:
        _scope.reset(token)


__all__ = ["CrossEnvironmentAccess", "current_environment", "enter_request",
           "leave_request", "request_environ", "request_environment", "using_environment"]
