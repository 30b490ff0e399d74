"""``ProxyBackend``: the WSGI app for one URL backend, putting the proxy's parts together.

The request's path through the proxy reads top to bottom in :meth:`ProxyBackend.__call__`:
URL (:mod:`.urls`) → headers (:mod:`.headers`) → body (:mod:`.bodies`) → send over a
kept-alive connection (:mod:`.pool`, :mod:`.wire`) → errors translated (:mod:`.failures`) →
response head → first piece of the body → ``start_response``. Everything that can fail
before a byte reaches the caller raises an envroute error before ``start_response``, so
the gateway can answer a problem or fail over.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from .. import metrics
from ..errors import BackendError, BadRequestBody
from ..names import reason_phrase
from ..settings import BackendSettings
from ..typing import HeaderList, StartResponse, WSGIEnvironment
from .bodies import ClientBodyError, RequestBody, ResponseBody, finish, first_piece
from .failures import translate
from .headers import request_headers, response_headers
from .pool import ConnectionPool
from .urls import Upstream
from .wire import Response

_NO_BODY_STATUSES = frozenset({204, 304})


class ProxyBackend:
    """The WSGI app for one URL backend; see :mod:`envroute.proxy` for what it forwards."""

    def __init__(self, backend: BackendSettings, *, signing_secret: str = "") -> None:
        self.upstream = Upstream(backend)
        self.name = backend.name
        self.settings = backend
        self.origin = self.upstream.origin
        self.base_path = self.upstream.base_path
        self.strip_prefix = backend.strip_prefix
        self.timeout = (backend.connect_timeout, backend.timeout)
        self.pool = ConnectionPool(self.origin, backend.pool_size, self.timeout)
        self.pool_size = self.pool.size
        self._where = self.origin.partition("://")[2]
        self._signing_secret = signing_secret

    def __repr__(self) -> str:
        return f"ProxyBackend({self.name!r}, {self.origin + self.base_path!r})"

    def close(self) -> None:
        """Close this process's pooled connections (a later request opens new ones)."""
        self.pool.close()

    # -- the request ------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        body = RequestBody.from_environ(environ)  # None: no body
        headers, identity = request_headers(
            environ, signing_secret=self._signing_secret,
            content_length=body.length if body is not None else None)
        sent = time.perf_counter()
        try:
            # An iterable body streams (chunked unless Content-Length is set).
            raw = self.pool.urlopen(method, self.upstream.target_for(environ), headers, body,
                                    identity)
        except ClientBodyError as exc:
            raise BadRequestBody(str(exc)) from None
        except Exception as exc:  # every socket, TLS or HTTP error becomes ours
            retryable = body is None or not body.started
            raise self._failure(exc, retryable=retryable) from None
        finally:  # until the response headers arrived, or the attempt failed
            metrics.observe_upstream(self.name, time.perf_counter() - sent)
        try:
            status = _status(raw)
            passed = response_headers(raw, self.upstream, environ, backend=self.name)
            if method == "HEAD" or raw.status in _NO_BODY_STATUSES:
                finish(raw)
                start_response(status, passed)
                return []
            first = first_piece(raw)
        except BackendError:
            _discard(raw)
            raise
        except Exception as exc:  # the head arrived, the body did not: still a problem
            _discard(raw)
            raise self._failure(exc, retryable=False) from None
        start_response(status, passed)
        if raw.done:  # the whole body came in its first piece; the connection is back
            return [first] if first else []
        return ResponseBody(raw, self.name, first)

    def _failure(self, exc: Exception, *, retryable: bool) -> BackendError:
        return translate(exc, where=self._where, backend=self.name, timeouts=self.timeout,
                         retryable=retryable)

    # -- helpers kept for callers and tests ---------------------------------------------

    def url_for(self, environ: WSGIEnvironment) -> str:
        """The upstream URL: the backend's origin and path fixed, then the request's path."""
        return self.upstream.url_for(environ)

    def rewrite_location(self, location: str, environ: WSGIEnvironment) -> str:
        """A ``Location`` into this backend, as a path on the gateway; others unchanged."""
        return self.upstream.rewrite_url(location, environ)

    def response_head(self, raw: Response,
                      environ: WSGIEnvironment) -> tuple[str, HeaderList]:
        """The status line and the headers to pass back to the caller."""
        return _status(raw), response_headers(raw, self.upstream, environ,
                                              backend=self.name)

    # -- envroute check ---------------------------------------------------------------

    def check(self) -> str:
        """Reach the backend and describe it in one line; any HTTP answer counts.

        Sends ``HEAD`` to the backend URL with its timeouts and no identity headers.
        Raises :class:`BackendUnavailable` or :class:`BackendTimeout` when unreachable.
        """
        started = time.perf_counter()
        try:
            raw = self.pool.urlopen("HEAD", self.base_path or "/",
                                    {"User-Agent": "envroute-check"}, None)
        except Exception as exc:
            raise self._failure(exc, retryable=True) from None
        elapsed = (time.perf_counter() - started) * 1000
        status = _status(raw)
        finish(raw)
        return f"{self.origin}{self.base_path or '/'} answered {status} in {elapsed:.0f} ms"


def _status(raw: Response) -> str:
    return f"{raw.status} {raw.reason or reason_phrase(raw.status)}"


def _discard(raw: Response) -> None:
    """A response that will not be passed on: its connection must not be reused."""
    raw.close()
