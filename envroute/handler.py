"""The request's one path through the gateway, shared by every front end.

``EnvRouter.__call__`` (gunicorn, ``envroute serve``, a wrapped app), the Flask extension
(which installs the router as ``app.wsgi_app``) and the Django middleware all run
:func:`handle`, so there is exactly one orchestration:

    request id -> gateway-answered paths (health) -> admit (credential -> identity ->
    policies -> route) -> backend, with failover -> Request-Id and policy headers ->
    access line

A refusal anywhere is a :class:`~envroute.problems.Problem` translated in one place
(:func:`envroute.problems.as_problem`). A front end that serves the backend ``app``
itself (Django's views) passes it as ``app=``; the response then reaches its server
exactly as the core made it: every header line, in order, and the body bytes.

PEP 3333 on the error path (the risk this module exists to contain): the server's
``start_response`` is called only when the backend's first body bytes exist (or its body
turned out empty), after its status and headers were checked as gunicorn checks them. So
an in-process backend that sends an invalid header, raises after ``start_response``, or
whose lazy generator raises before its first bytes, is answered ``502
backend_unavailable`` as a problem; once bytes reached the caller the exception is
re-raised so the server closes the connection (a truncated body is never passed off as
complete). ``start_response`` is never called twice without ``exc_info``. No path ends in
a 500 or shows a traceback to the caller.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from . import metrics
from .accesslog import escape
from .errors import BackendError, BackendTimeout, BackendUnavailable, StoreUnavailable
from .identity import Identity
from .names import BACKEND_KEY, IDEMPOTENT_METHODS, IDENTITY_KEY, REQUEST_ID_KEY, status_line
from .ownpaths import Handler
from .problems import Problem, as_problem
from .settings import APP_BACKEND
from .typing import HeaderList, StartResponse, WSGIApplication, WSGIEnvironment

if TYPE_CHECKING:
    from .gateway import EnvRouter

logger = logging.getLogger("envroute")

#: Where a request's :class:`Exchange` lives in the environ while the gateway serves it.
#: Front ends record a refusal they make themselves on it (:func:`refusal`).
EXCHANGE_KEY = "envroute.exchange"

T = TypeVar("T")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[ \t\x21-\x7e\x80-\xff]*")
_STATUS = re.compile(r"[1-5][0-9]{2}(?: [ \t\x21-\x7e\x80-\xff]*)?")
#: Status lines and header names a backend sent that passed the checks above, one set
#: each: a backend sends few distinct ones, so after the first requests each check is a
#: set look-up rather than a regex (issue 14: five regex matches were ~5% of a cached
#: request's cost). Bounded, so a backend inventing names cannot grow them; past the
#: bound, the regex runs.
_GOOD_STATUS: set[str] = set()
_GOOD_NAMES: set[str] = set()
_GOOD_MAX = 1024


def _good(text: object, pattern: re.Pattern[str], good: set[str]) -> bool:
    """``text`` is a str that ``pattern`` matches whole; remembered in ``good``."""
    if not (isinstance(text, str) and pattern.fullmatch(text)):
        return False
    if len(good) < _GOOD_MAX:
        good.add(text)
    return True


def _good_value(value: object) -> bool:
    """A header value that is not plain printable ASCII (checked inline first)."""
    return isinstance(value, str) and _VALUE.fullmatch(value) is not None


def new_request_id() -> str:
    """A unique id for one request (not a secret).

    ``random`` rather than ``os.urandom``: ``getrandom()`` releases the GIL, and under a
    threaded server re-acquiring it queues the request behind other threads (measured:
    +20% latency under gunicorn gthread). CPython reseeds ``random`` in every forked
    worker, so workers never share a sequence.
    """
    return f"req_{random.getrandbits(96):024x}"


class Exchange:
    """What the access log (and metrics) learn about one request as it goes."""

    __slots__ = ("backend", "code", "flags", "identity", "logged", "method", "path",
                 "request_id", "started", "status")

    def __init__(self, environ: WSGIEnvironment) -> None:
        self.request_id: str = environ.setdefault(REQUEST_ID_KEY, new_request_id())
        self.started = time.perf_counter()
        self.method: str = environ.get("REQUEST_METHOD", "GET")
        self.path: str = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        self.identity: Identity | None = None
        self.backend: str | None = None
        self.status = 0
        self.code: str | None = None
        self.logged = False
        self.flags: set[str] = set()


def refusal(environ: WSGIEnvironment, exc: BaseException) -> Problem:
    """The problem for ``exc``, noted on the request's exchange and logged as the request
    path logs failures: for front ends that answer an exception themselves (Django's
    ``process_exception``, a Flask error handler)."""
    problem = as_problem(exc)
    exchange = environ.get(EXCHANGE_KEY)
    if isinstance(exchange, Exchange):
        exchange.code = problem.code
        _log_failure(None, exchange, exc)
    return problem


def try_backends(names: Sequence[str], method: str, call: Callable[[str], T]) -> T:
    """``call(name)`` for each backend in turn, moving on only when failover is safe.

    The next backend is tried only after :class:`BackendUnavailable` that is retryable
    (nothing of the request body was sent) and only for idempotent methods: a POST is
    never sent twice.
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


def handle(router: EnvRouter, environ: WSGIEnvironment, start_response: StartResponse,
           app: WSGIApplication | None = None) -> Iterable[bytes]:
    """Serve one request through ``router``; ``app`` serves the backend ``app`` if given."""
    exchange = Exchange(environ)
    environ[EXCHANGE_KEY] = exchange
    response = _Response(router, exchange, start_response)
    own = router.own_paths.find(environ) if router.own_paths else None
    if own is not None:
        return _answer_own(response, environ, own)
    try:
        admission = router.admit(environ)
    except Exception as exc:  # every refusal is a problem; never a traceback
        identity = environ.get(IDENTITY_KEY)  # refused by a policy or the route
        exchange.identity = identity if isinstance(identity, Identity) else None
        return response.refuse_now(exc)
    router.outage.admitted()
    exchange.identity = admission.identity
    response.extra = admission.headers

    def call(name: str) -> Iterable[bytes]:
        environ[BACKEND_KEY] = exchange.backend = name
        backend = app if app is not None and name == APP_BACKEND else router.backend(name)
        response.head = None
        return backend(environ, response.start)

    try:
        result = try_backends(admission.decision.backends, exchange.method, call)
    except Exception as exc:
        return response.refuse_now(exc)
    return _Body(response, result)


def _answer_own(response: _Response, environ: WSGIEnvironment,
                own: Handler) -> Iterable[bytes]:
    response.exchange.flags.add("own")  # not counted in metrics
    try:
        answer = own(environ)
    except Exception as exc:
        return response.refuse_now(exc)
    exchange = response.exchange
    headers = [*answer.headers, ("Request-Id", exchange.request_id)]
    response.start_response(status_line(answer.status), headers)
    exchange.status = answer.status
    response.log()
    return [] if exchange.method == "HEAD" else [answer.body]


def _log_failure(router: EnvRouter | None, exchange: Exchange, exc: BaseException) -> None:
    """One log line per failed request, except store outages (reported once each)."""
    if isinstance(exc, Problem):
        return  # a refusal: the access line says it all
    if isinstance(exc, StoreUnavailable):
        metrics.store_error()
        if router is not None:
            router.outage.failed(exc)
        return
    backend = escape(exchange.backend or "-")
    if isinstance(exc, BackendTimeout):
        logger.error("request %s: backend %s timed out: %s", exchange.request_id, backend,
                     escape(str(exc)))
    elif isinstance(exc, BackendError):
        logger.error("request %s: backend %s unavailable: %s", exchange.request_id,
                     backend, escape(str(exc)))
    elif as_problem(exc).code != "backend_unavailable":  # the caller's, or a fence
        logger.warning("request %s refused: %s", exchange.request_id, escape(str(exc)))
    else:
        logger.error("request %s: backend %s failed", exchange.request_id, backend,
                     exc_info=exc)


class _Response:
    """The response head of one request, held back until the body's first bytes exist."""

    __slots__ = ("exchange", "extra", "head", "router", "sent", "start_response",
                 "started", "writer")

    def __init__(self, router: EnvRouter, exchange: Exchange,
                 start_response: StartResponse) -> None:
        self.router = router
        self.exchange = exchange
        self.start_response = start_response
        self.extra: HeaderList = []
        self.head: tuple[str, HeaderList] | None = None
        self.started = False  # the server's start_response was called
        self.sent = False  # body bytes were handed to the server
        self.writer: Callable[[bytes], object] | None = None

    def start(self, status: str, headers: HeaderList, exc_info: Any = None) -> Any:
        """The ``start_response`` a backend gets: checks and records its head."""
        if exc_info is not None:
            try:
                if self.started:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        if not ((type(status) is str and status in _GOOD_STATUS)
                or _good(status, _STATUS, _GOOD_STATUS)):
            raise BackendError(f"invalid status line {status!r}", backend=self.exchange.backend
                               or "")
        checked: HeaderList = []
        for name, value in headers:
            if not ((type(name) is str and name in _GOOD_NAMES)
                    or _good(name, _TOKEN, _GOOD_NAMES)) \
                    or not ((type(value) is str and value.isascii() and value.isprintable())
                            or _good_value(value)):
                raise BackendError(f"invalid response header {name!r}",  # never the value
                                   backend=self.exchange.backend or "")
            if name.lower() != "request-id":
                checked.append((name, value))
        checked.append(("Request-Id", self.exchange.request_id))
        checked.extend(self.extra)
        self.head = (status, checked)
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333's legacy ``write()``: the head goes out first."""
        if not self.started:
            self.begin()
        assert self.writer is not None
        if data:
            self.sent = True
        self.writer(data)

    def begin(self) -> None:
        assert self.head is not None
        status, headers = self.head
        self.started = True
        self.writer = self.start_response(status, headers)
        self.settle(int(status[:3]))

    def settle(self, status: int) -> None:
        """The caller's status is known: count the request for its key, once (§16)."""
        exchange = self.exchange
        exchange.status = status
        if exchange.identity is not None and "recorded" not in exchange.flags:
            exchange.flags.add("recorded")
            self.router.authenticator.record(exchange.identity, status)

    def refuse_now(self, exc: BaseException) -> list[bytes]:
        """Refuse before any body: the problem's response, and its access line at once."""
        body = self.refuse(exc)
        self.log()
        return body

    def refuse(self, exc: BaseException) -> list[bytes]:
        problem = as_problem(exc)
        exchange = self.exchange
        _log_failure(self.router, exchange, exc)
        body = problem.body(exchange.request_id)
        status, headers = status_line(problem.status), problem.response_headers(
            exchange.request_id, body)
        if self.started:  # the head was given to the server but no body: replace it
            self.start_response(status, headers, sys.exc_info())  # called in `except`
        else:
            self.started = True
            self.start_response(status, headers)
        exchange.code = problem.code
        self.settle(problem.status)
        return [] if exchange.method == "HEAD" else [body]

    def log(self) -> None:
        """The request is over: write its access line."""
        exchange = self.exchange
        if exchange.logged:
            return
        exchange.logged = True
        seconds = time.perf_counter() - exchange.started
        if "own" not in exchange.flags:  # the health and metrics paths are not counted
            metrics.observe_request(exchange.identity.environment if exchange.identity else None,
                                    exchange.backend, exchange.code or "ok", seconds,
                                    exchange.status)
        self.router.access_log.write(
            request_id=exchange.request_id, identity=exchange.identity,
            backend=exchange.backend, method=exchange.method, path=exchange.path,
            status=exchange.status, code=exchange.code, duration_ms=seconds * 1000)


class _Body:
    """A backend's body, passed through; the request is logged when it is closed."""

    __slots__ = ("_response", "_result")

    def __init__(self, response: _Response, result: Iterable[bytes]) -> None:
        self._response = response
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        response = self._response
        try:
            chunks = iter(self._result)
            first = b""
            for chunk in chunks:
                if chunk:
                    first = chunk
                    break
            if response.head is None:
                raise BackendError("the backend returned without starting a response",
                                   backend=response.exchange.backend or "")
            if not response.started:
                response.begin()
        except Exception as exc:
            if response.sent:
                self._broke_off(exc)
                raise
            yield from response.refuse(exc)
            return
        try:
            if first:
                response.sent = True
                yield first
            yield from chunks
        except Exception as exc:
            self._broke_off(exc)
            raise  # the server closes the connection: a cut body never looks complete

    def _broke_off(self, exc: BaseException) -> None:
        exchange = self._response.exchange
        exchange.code = "backend_unavailable"
        if not isinstance(exc, BackendError):  # the proxy logs its own, without a trace
            logger.error("request %s: backend %s failed after its response started; "
                         "closing the connection", exchange.request_id,
                         escape(exchange.backend or "-"), exc_info=exc)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        except Exception:
            logger.exception("request %s: closing the backend's response failed",
                             self._response.exchange.request_id)
        finally:
            self._response.log()

