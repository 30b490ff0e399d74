"""``EnvRouter``: the WSGI middleware that authenticates, applies policies and routes.

The request's whole path reads top to bottom in :meth:`EnvRouter.__call__`:

    credential -> identity -> policies -> route -> backend

Every refusal on the way is a :class:`~envroute.problems.Problem` rendered as
``application/problem+json`` with a ``Request-Id``; nothing ever falls through to a
backend after a refusal, and no exception or traceback reaches the caller.

Security notes: client-sent ``Envroute-*`` headers are dropped before anything reads them,
the caller's credential is removed before any backend runs, and ``envroute.identity`` is
set only by the gateway, so a backend can trust what it finds in the environ.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from .auth import Authenticator, build_authenticator
from .backends import build_backends
from .config import find_config_path, load_file, parse_settings
from .credentials import CredentialReader
from .errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    StoreUnavailable,
)
from .identity import Identity
from .policies import Policy, build_policies
from .problems import Problem
from .routing import Decision, Router
from .settings import APP_BACKEND, Settings
from .stores import InvalidationSource, KeyStore, open_store
from .stores.base import Change
from .typing import HeaderList, StartResponse, WSGIApplication, WSGIEnvironment

access_log = logging.getLogger("envroute.access")
logger = logging.getLogger("envroute")

IDENTITY_KEY = "envroute.identity"
BACKEND_KEY = "envroute.backend"
REQUEST_ID_KEY = "envroute.request_id"
#: Methods that failover may send to a second backend: they are safe to repeat.
_ENVROUTE_HEADER = "HTTP_ENVROUTE_"
#: set once a request's usage is recorded, so a late failure does not count it twice
_RECORDED_KEY = "envroute.usage_recorded"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

T = TypeVar("T")
ConfigSource = Settings | Mapping[str, Any] | str | os.PathLike[str] | None


def new_request_id() -> str:
    """A unique id for one request (not a secret).

    ``random`` rather than ``os.urandom``: ``getrandom()`` releases the GIL, and under a
    threaded server re-acquiring it queues the request behind other threads (measured:
    +20% latency under gunicorn gthread). CPython reseeds ``random`` in every forked
    worker, so workers never share a sequence.
    """
    return f"req_{random.getrandbits(96):024x}"


def load_settings(config: ConfigSource, builtin: Iterable[str] = ()) -> Settings:
    """Settings from a path, a dict or ``None`` (``$ENVROUTE_CONFIG`` / ``./envroute.toml``)."""
    if isinstance(config, Settings):
        return config
    if isinstance(config, Mapping):
        return parse_settings(config, source="<dict>", builtin_backends=builtin)
    path = find_config_path(config)
    if path is None:
        raise ConfigError("no configuration: pass a path or a dict, or set ENVROUTE_CONFIG")
    return load_file(path, builtin_backends=builtin)


class EnvRouter:
    """Wrap a WSGI app (or none, as a standalone gateway) with keys, policies and routing.

    ``EnvRouter(app, "envroute.toml")`` or ``EnvRouter.from_config({...}, app=app)``. The
    wrapped app is the backend named ``"app"``; ``backends={"name": wsgi_app}`` adds other
    in-process backends given as objects. ``store`` overrides ``[store] url``.
    """

    def __init__(
        self,
        app: WSGIApplication | None = None,
        config: ConfigSource = None,
        *,
        backends: Mapping[str, WSGIApplication] | None = None,
        store: KeyStore | None = None,
    ) -> None:
        builtin: dict[str, WSGIApplication] = dict(backends or {})
        if app is not None:
            builtin[APP_BACKEND] = app
        self.app = app
        self.settings = load_settings(config, builtin)
        self.store = store if store is not None else open_store(self.settings.store_url)
        self.credentials = CredentialReader(self.settings.auth)
        self.authenticator: Authenticator = build_authenticator(self.settings, self.store)
        self.policies: tuple[Policy, ...] = build_policies(self.settings)
        self.router = Router(self.settings.routes)
        self.backends = build_backends(self.settings, builtin)
        if isinstance(self.store, InvalidationSource):
            self.store.subscribe(self._on_change)

    def _on_change(self, change: Change) -> None:
        self.authenticator.on_change(change)

    @classmethod
    def from_config(
        cls, config: ConfigSource, app: WSGIApplication | None = None, **kwargs: Any
    ) -> EnvRouter:
        """Build from a dict (the TOML schema), a path, or ``Settings``."""
        return cls(app, config, **kwargs)

    # -- the request's path -----------------------------------------------------------

    def admit(self, environ: WSGIEnvironment) -> Admission:
        """Authenticate, apply policies and route, without calling any backend.

        Raises :class:`Problem` (or an :class:`EnvrouteError` that :func:`as_problem`
        translates) to refuse. On success the environ carries ``envroute.identity`` and
        ``envroute.backend``, and no longer carries the credential or any client-sent
        ``Envroute-*`` header. Framework integrations call this, then dispatch themselves.
        """
        if _ENVROUTE_HEADER in "\0".join(environ):  # one C-speed scan; rarely true
            for name in [k for k in environ if k.startswith(_ENVROUTE_HEADER)]:
                del environ[name]  # only the gateway speaks for the caller
        credential = self.credentials.read(environ)
        identity = self.authenticator.authenticate(credential)
        environ[IDENTITY_KEY] = identity
        self.credentials.strip(environ, credential)
        headers: HeaderList = []
        for policy in self.policies:
            headers.extend(policy.check(identity, environ))
        decision = self.router.route(identity, environ)
        environ[BACKEND_KEY] = decision.backends[0]
        return Admission(identity, decision, headers)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request_id = environ.setdefault(REQUEST_ID_KEY, new_request_id())
        started = time.perf_counter()
        admission: Admission | None = None
        try:
            admission = self.admit(environ)
            return self._dispatch(environ, start_response, admission, request_id, started)
        except Exception as exc:  # every failure becomes a problem; never a traceback
            refusal = as_problem(exc, request_id)
        identity = environ.get(IDENTITY_KEY)
        if identity is not None and not environ.get(_RECORDED_KEY):
            self.authenticator.record(identity, refusal.status)  # usage: errors count too
        body = refusal.respond(start_response, request_id,
                               head=environ.get("REQUEST_METHOD") == "HEAD")
        self.log(environ, admission.identity if admission else environ.get(IDENTITY_KEY),
                 refusal.status, started)
        return body

    def _dispatch(self, environ: WSGIEnvironment, start_response: StartResponse,
                  admission: Admission, request_id: str, started: float) -> Iterable[bytes]:
        status_holder: list[str] = []
        headers = admission.headers

        def start(status: str, response_headers: HeaderList, exc_info: Any = None) -> Any:
            response_headers = [h for h in response_headers if h[0].lower() != "request-id"]
            response_headers.append(("Request-Id", request_id))
            response_headers.extend(headers)
            if not status_holder:  # usage (§16): once per request, in memory
                environ[_RECORDED_KEY] = True
                self.authenticator.record(admission.identity, int(status[:3]))
            status_holder[:] = [status]
            return start_response(status, response_headers, exc_info)

        def call(name: str) -> Iterable[bytes]:
            environ[BACKEND_KEY] = name
            return self.backends[name](environ, start)

        result = try_backends(admission.decision.backends,
                              environ.get("REQUEST_METHOD", "GET"), call)
        if not access_log.isEnabledFor(logging.INFO):
            return result
        return _LoggedResponse(result, lambda: self.log(
            environ, admission.identity,
            int(status_holder[0][:3]) if status_holder else 0, started))

    def log(self, environ: WSGIEnvironment, identity: Identity | None, status: int,
            started: float) -> None:
        """The one access-log line of a request (logger ``envroute.access``, level INFO)."""
        if not access_log.isEnabledFor(logging.INFO):
            return
        request_id = environ.get(REQUEST_ID_KEY, "-")
        backend = environ.get(BACKEND_KEY, "")
        duration_ms = (time.perf_counter() - started) * 1000
        access_log.info(
            "%s key=%s env=%s backend=%s %s %s %s %.1fms",
            request_id, identity.key_id if identity else "-",
            identity.environment if identity else "-", backend or "-",
            environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "") or "/", status,
            duration_ms,
            extra={"request_id": request_id,
                   "key_id": identity.key_id if identity else None,
                   "environment": identity.environment if identity else None,
                   "backend": backend or None, "status": status,
                   "duration_ms": round(duration_ms, 3)},
        )


class Admission(NamedTuple):
    """A request the gateway accepted: who, where to, and headers the policies added."""

    identity: Identity
    decision: Decision
    headers: HeaderList


def try_backends(names: Sequence[str], method: str, call: Callable[[str], T]) -> T:
    """``call(name)`` for each backend in turn, moving on only when failover is safe.

    The next backend is tried only after :class:`BackendUnavailable` that is retryable
    (nothing of the request body was sent) and only for idempotent methods: a POST is
    never sent twice. Framework integrations use this too, so failover has one rule.
    """
    for attempt, name in enumerate(names):
        try:
            return call(name)
        except BackendUnavailable as exc:
            if attempt == len(names) - 1 or not exc.retryable or method not in IDEMPOTENT_METHODS:
                raise
            logger.warning("backend %s unavailable (%s); failing over to %s",
                           name, exc, names[attempt + 1])
    raise ValueError("a route names at least one backend")


def as_problem(exc: BaseException, request_id: str = "-") -> Problem:
    """Translate any failure on the request's path into the contract's problem (§8)."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, StoreUnavailable):
        logger.error("store unavailable: %s", exc)
        return Problem("store_unavailable", "a store the gateway depends on (keys, rate "
                       "limits or token keys) cannot be reached; retry shortly")
    if isinstance(exc, BackendTimeout):
        logger.error("backend %s timed out: %s", exc.backend or "-", exc)
        return Problem("backend_timeout", "the backend did not answer in time")
    if isinstance(exc, BackendError):
        logger.error("backend %s unavailable: %s", exc.backend or "-", exc)
        return Problem("backend_unavailable", "the backend could not be reached")
    logger.error("request %s failed", request_id, exc_info=exc)
    return Problem("backend_unavailable", "the request could not be completed")


class _LoggedResponse:
    """Passes a backend's response through and logs the request once it is closed."""

    __slots__ = ("_done", "_iterable", "_log")

    def __init__(self, iterable: Iterable[bytes], log: Any) -> None:
        self._iterable = iterable
        self._log = log
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._iterable)

    def close(self) -> None:
        try:
            close = getattr(self._iterable, "close", None)
            if close is not None:
                close()
        finally:
            if not self._done:
                self._done = True
                self._log()
