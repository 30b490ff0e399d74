"""One request through the gateway: what it learns, the backend's ``start_response``, the body.

:func:`envroute.handler.handle` runs the request's path; an :class:`Exchange` is that
request's state and its response. One object per request (issue 14: three before) is at
once the record the access line and metrics are written from, the ``start_response`` the
backend gets and the body handed back to the server; a backend's body that is already a
list or tuple is passed through as it is, and logged at once, with no wrapper.

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
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import count
from random import getrandbits
from time import perf_counter
from typing import TYPE_CHECKING, Any

from . import metrics
from .accesslog import access_logger, escape
from .errors import BackendError, BackendTimeout, StoreUnavailable
from .heads import GOOD_NAMES, GOOD_STATUS, checked_headers, good_status
from .identity import Identity
from .names import BACKEND_KEY, REQUEST_ID_KEY, status_line
from .ownpaths import Handler
from .problems import Problem, as_problem
from .settings import APP_BACKEND
from .typing import HeaderList, StartResponse, WSGIApplication, WSGIEnvironment

if TYPE_CHECKING:
    from .gateway import EnvRouter

logger = logging.getLogger("envroute")
INFO = logging.INFO

#: What an :class:`Exchange` holds instead of its environ once the request is over.
_RELEASED: WSGIEnvironment = {}

#: Where a request's :class:`Exchange` lives in the environ while the gateway serves it.
#: Front ends record a refusal they make themselves on it
#: (:func:`envroute.handler.refusal`).
EXCHANGE_KEY = "envroute.exchange"
_request_prefix = ""
_request_counter = count()
_ID_BIT = 1 << 48
_ID_MASK = _ID_BIT - 1


def _draw_request_ids() -> None:
    global _request_prefix, _request_counter
    _request_prefix = f"req_{getrandbits(48):012x}"
    # a random odd step: every value mod 2**48 comes once, and neighbours do not look it
    _request_counter = count(getrandbits(48), getrandbits(47) * 2 + 1)


_draw_request_ids()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_draw_request_ids)


def new_request_id() -> str:
    """A unique id for one request (not a secret): ``req_`` and 24 hex digits.

    48 random bits drawn per process, then a counter with a random start and step: unique
    without a random draw per request (``getrandbits`` and its formatting were a tenth of
    a cached request's cost), and ids in a row do not read as a count of requests; drawn
    again in a forked child, so workers never share a prefix. Not a secret, and not meant
    to be unguessable.
    """
    # hex() of the value with bit 48 set, that bit's digit cut off: 12 digits, zero-padded,
    # at ~four fifths of a format spec's cost
    return _request_prefix + hex(next(_request_counter) & _ID_MASK | _ID_BIT)[3:]


def log_failure(router: EnvRouter | None, exchange: Exchange, exc: BaseException) -> None:
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


class Exchange:
    """One request through the gateway.

    What the access line and metrics learn as it goes; the ``start_response`` a backend
    gets (:meth:`start`, which holds the head back until the body's first bytes exist);
    and the backend's body as the server sees it (iterated, then closed: the request is
    logged when it is closed).
    """

    # what every request starts with, as class attributes: __init__ sets only what differs
    identity: Identity | None = None
    backend: str | None = None
    status = 0
    code: str | None = None
    logged = own = recorded = False
    extra: Sequence[tuple[str, str]] = ()
    head: tuple[str, HeaderList, int] | None = None  # status line, headers, status code
    started = False  # the server's start_response was called
    sent = False  # body bytes were handed to the server
    writer: Callable[[bytes], object] | None = None
    result: Iterable[bytes] = ()

    def __init__(self, router: EnvRouter, environ: WSGIEnvironment,
                 start_response: StartResponse, app: WSGIApplication | None = None) -> None:
        self.router = router
        self.environ = environ
        self.start_response = start_response
        self.app = app
        request_id = environ.get(REQUEST_ID_KEY)
        if request_id is None:  # new_request_id(), inline
            request_id = environ[REQUEST_ID_KEY] = \
                _request_prefix + hex(next(_request_counter) & _ID_MASK | _ID_BIT)[3:]
        self.request_id: str = request_id
        environ[EXCHANGE_KEY] = self
        self.started_at = perf_counter()
        self.method: str = environ.get("REQUEST_METHOD", "GET")

    # -- calling the backend --------------------------------------------------------

    def call(self, name: str) -> Iterable[bytes]:
        """Run the backend ``name`` (one attempt of :func:`try_backends`)."""
        environ = self.environ
        environ[BACKEND_KEY] = self.backend = name
        app = self.app
        if app is not None and name == APP_BACKEND:
            backend = app
        else:
            router = self.router
            backend = router.backends.get(name) or router.backend(name)
        self.head = None
        self.result = result = backend(environ, self.start)
        return result

    def start(self, status: str, headers: HeaderList, exc_info: Any = None) -> Any:
        """The ``start_response`` a backend gets: checks and records its head."""
        if exc_info is not None:
            try:
                if self.started:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        code = GOOD_STATUS.get(status) if type(status) is str else None
        if code is None and (code := good_status(status)) is None:
            raise BackendError(f"invalid status line {status!r}", backend=self.backend or "")
        if type(headers) is not list:  # PEP 3333 asks for a list; read anything else once
            headers = list(headers)
        checked: HeaderList | None = None
        good = GOOD_NAMES
        try:  # the common case: names seen before, printable ASCII values, passed as they are
            for name, value in headers:
                if name not in good or not value.isascii() or not value.isprintable():
                    break
            else:
                checked = [*headers, ("Request-Id", self.request_id)]
        except (AttributeError, TypeError, ValueError):  # not str, not a pair: see below
            pass
        if checked is None:
            checked = checked_headers(headers, self.backend or "")
            checked.append(("Request-Id", self.request_id))
        if self.extra:
            checked += self.extra
        self.head = (status, checked, code)
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
        status, headers, code = self.head
        self.started = True
        self.writer = self.start_response(status, headers)
        self.settle(code)

    def settle(self, status: int) -> None:
        """The caller's status is known: count the request for its key, once (§16)."""
        self.status = status
        if self.identity is not None and not self.recorded:
            self.recorded = True
            self.router.authenticator.record(self.identity, status)

    # -- the response ---------------------------------------------------------------

    def whole(self, body: list[bytes] | tuple[bytes, ...]) -> Iterable[bytes]:
        """A backend's body that exists already: its head goes out, the request is logged,
        and the body is handed to the server as it is."""
        head = self.head
        if head is None:
            raise BackendError("the backend returned without starting a response",
                               backend=self.backend or "")
        for chunk in body:
            if type(chunk) is not bytes and not isinstance(chunk, bytes):
                raise self._not_bytes(chunk)
        if not self.started:
            self.started = True
            self.writer = self.start_response(head[0], head[1])
            self.status = status = head[2]
            if self.identity is not None:  # settle(), inline: nothing recorded it yet
                self.recorded = True
                self.router.authenticator.record(self.identity, status)
        self.log()
        return body

    def __iter__(self) -> Iterator[bytes]:
        try:
            chunks = iter(self.result)
            first = b""
            for chunk in chunks:
                if not isinstance(chunk, bytes):  # before any byte went out: a 502
                    raise self._not_bytes(chunk)
                if chunk:
                    first = chunk
                    break
            if self.head is None:
                raise BackendError("the backend returned without starting a response",
                                   backend=self.backend or "")
            if not self.started:
                self.begin()
        except Exception as exc:
            if self.sent:
                self._broke_off(exc)
                raise
            yield from self.refuse(exc)
            return
        try:
            if first:
                self.sent = True
                yield first
            yield from chunks
        except Exception as exc:
            self._broke_off(exc)
            raise  # the server closes the connection: a cut body never looks complete

    def _not_bytes(self, chunk: object) -> BackendError:
        """PEP 3333: a body is bytes; a server handed a str sends a head and then fails."""
        return BackendError(f"the response body holds {type(chunk).__name__}, not bytes",
                            backend=self.backend or "")

    def _broke_off(self, exc: BaseException) -> None:
        self.code = "backend_unavailable"
        if not isinstance(exc, BackendError):  # the proxy logs its own, without a trace
            logger.error("request %s: backend %s failed after its response started; "
                         "closing the connection", self.request_id,
                         escape(self.backend or "-"), exc_info=exc)

    def close(self) -> None:
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        except Exception:
            logger.exception("request %s: closing the backend's response failed",
                             self.request_id)
        finally:
            self.result = ()
            self.log()

    def answer_own(self, own: Handler) -> Iterable[bytes]:
        """A path the gateway answers itself (health, metrics): not counted in metrics."""
        self.own = True
        try:
            answer = own(self.environ)
        except Exception as exc:
            return self.refuse_now(exc)
        headers = [*answer.headers, ("Request-Id", self.request_id)]
        self.start_response(status_line(answer.status), headers)
        self.status = answer.status
        self.log()
        return [] if self.method == "HEAD" else [answer.body]

    def refuse_now(self, exc: BaseException) -> list[bytes]:
        """Refuse before any body: the problem's response, and its access line at once."""
        body = self.refuse(exc)
        self.log()
        return body

    def refuse(self, exc: BaseException) -> list[bytes]:
        problem = as_problem(exc)
        log_failure(self.router, self, exc)
        body = problem.body(self.request_id)
        status, headers = status_line(problem.status), problem.response_headers(
            self.request_id, body)
        if self.started:  # the head was given to the server but no body: replace it
            self.start_response(status, headers, sys.exc_info())  # called in `except`
        else:
            self.started = True
            self.start_response(status, headers)
        self.code = problem.code
        self.settle(problem.status)
        return [] if self.method == "HEAD" else [body]

    def log(self) -> None:
        """The request is over: write its access line.

        The exchange lets go of the environ here: the environ holds the exchange
        (``envroute.exchange``), and a cycle would leave both, and what hangs off them, to
        the garbage collector instead of freeing them at once (issue 14: collections were a
        twentieth of a cached request's cost)."""
        if self.logged:
            return
        self.logged = True
        environ = self.environ
        self.environ = _RELEASED
        seconds = perf_counter() - self.started_at
        identity = self.identity
        if metrics.on and not self.own:  # the health and metrics paths are not counted
            metrics.observe_request(identity.environment if identity else None,
                                    self.backend, self.code or "ok", seconds, self.status)
        if access_logger.isEnabledFor(INFO):
            self.router.access_log.write(
                request_id=self.request_id, identity=identity, backend=self.backend,
                method=self.method,
                path=environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
                status=self.status, code=self.code, duration_ms=seconds * 1000)
