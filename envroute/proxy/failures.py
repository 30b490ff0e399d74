"""Lower-level failures (sockets, TLS, urllib3, the proxy's HTTP reader) as envroute's own errors.

requests' ``adapters.py`` style, which maps urllib3's errors to its own by type: every
error from the connection pool is re-raised as one of envroute's, by type (urllib3's,
as the pool raises them, and requests' for completeness): a connect timeout or a read timeout is
:class:`~envroute.errors.BackendTimeout` (504, never failed over), anything else is
:class:`~envroute.errors.BackendUnavailable` (502; retryable only while no byte of the
request body was sent). Messages name the upstream's host and port for the operator's log
and never the request's path or query string, which requests' own messages repeat.
"""

from __future__ import annotations

import http.client
import ssl

import requests
import urllib3.exceptions

from ..errors import BackendError, BackendTimeout, BackendUnavailable
from .wirehead import ProtocolError

#: Read timeouts as requests raises them, or as urllib3 raises them while the body
#: streams; ``TimeoutError`` from a socket's Python timeout, ``BlockingIOError``
#: (``EAGAIN``) from a plain connection whose calls the kernel bounds (see :mod:`.pool`).
#: (urllib3's ``NewConnectionError`` is a ``TimeoutError`` subclass for history's sake;
#: requests tells refused connections and connect timeouts apart for us.)
_READ_TIMEOUTS = (requests.Timeout, urllib3.exceptions.ReadTimeoutError, TimeoutError,
                  BlockingIOError)
#: What each kind of broken connection is called in a log line, most specific first.
_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (urllib3.exceptions.IncompleteRead, "connection closed before the end of the body"),
    (http.client.IncompleteRead, "connection closed before the end of the body"),
    (http.client.RemoteDisconnected, "connection closed without a response"),
    (urllib3.exceptions.InvalidChunkLength, "invalid chunked encoding"),
    (urllib3.exceptions.NewConnectionError, "connection refused or unreachable"),
    (urllib3.exceptions.SSLError, "TLS handshake failed"),
    (ssl.SSLError, "TLS handshake failed"),
    (ConnectionResetError, "connection reset by peer"),
    (ConnectionRefusedError, "connection refused"),
    (BrokenPipeError, "broken pipe"),
    (BlockingIOError, "timed out"),  # a kernel-bounded call, as TimeoutError's strerror
    (ProtocolError, "the response is not valid HTTP/1.1"),
)


def _wrapped(exc: BaseException) -> BaseException:
    """What requests wraps: a ``MaxRetryError``'s ``reason`` or urllib3's ``ProtocolError``
    argument (one known level, not a walk of ``__cause__`` chains)."""
    inner: object = (exc.args[0] if isinstance(exc, requests.RequestException) and exc.args
                     else exc)
    if isinstance(inner, urllib3.exceptions.MaxRetryError) and inner.reason is not None:
        inner = inner.reason
    if (isinstance(inner, urllib3.exceptions.ProtocolError) and len(inner.args) > 1
            and isinstance(inner.args[1], BaseException)):
        inner = inner.args[1]
    return inner if isinstance(inner, BaseException) else exc


def reason(exc: BaseException) -> str:
    """A short, secret-free reason: the kind of failure, never a URL."""
    inner = _wrapped(exc)
    for candidate in (inner, exc):
        for kind, text in _REASONS:
            if isinstance(candidate, kind):
                return text
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    return type(inner).__name__


def translate(exc: Exception, *, where: str, backend: str, timeouts: tuple[float, float],
              retryable: bool) -> BackendError:
    """The envroute error for a failure to get a response from ``where`` (host:port)."""
    inner = _wrapped(exc)
    if isinstance(exc, requests.ConnectTimeout) or (
            isinstance(inner, urllib3.exceptions.ConnectTimeoutError)
            and not isinstance(inner, urllib3.exceptions.NewConnectionError)):
        return BackendTimeout(f"timed out connecting to {where} (after {timeouts[0]:g} s)",
                              backend=backend)
    if isinstance(exc, _READ_TIMEOUTS) or isinstance(inner, _READ_TIMEOUTS):
        return BackendTimeout(f"{where} sent nothing for {timeouts[1]:g} s", backend=backend)
    if isinstance(inner, urllib3.exceptions.NewConnectionError):
        message = f"cannot connect to {where}: {reason(exc)}"
    else:
        message = f"connection to {where} failed: {reason(exc)}"
    return BackendUnavailable(message, backend=backend, retryable=retryable)
