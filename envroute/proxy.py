"""``ProxyBackend``: a streaming reverse proxy to one upstream URL, over ``requests``.

A ``[backends.NAME] url = "http://host:port/base"`` backend is a WSGI app that forwards
the request to that upstream and streams the answer back, in both directions, without
holding a body in memory: the request body is read from ``wsgi.input`` in 256 KiB pieces
as it is sent upstream (with its ``Content-Length``, or chunked when the caller sent it
chunked), and the response is passed on as each piece arrives.

What reaches the upstream (contract §7): the method, the path with its percent-encoding
as sent (``RAW_URI``/``REQUEST_URI`` when the server provides them; urllib3 upper-cases
the hex of percent-escapes, an equivalence of RFC 3986 §6.2.2.1, and escapes characters
that are invalid in a URL), the query string, the body and end-to-end headers; the
identity as ``Envroute-Key-Id``, ``Envroute-Environment``, ``Envroute-Metadata`` and,
with ``signing_secret``, ``Envroute-Signature`` (see :mod:`envroute.signing`);
``Envroute-Request-Id``; ``X-Forwarded-For/Proto/Host`` appended to any the caller sent.
``Host`` is the upstream's own. ``strip_prefix`` is removed from the path and the URL's
path is put in front: ``url = "http://h/base"`` with ``strip_prefix = "/sandbox"`` sends
``/sandbox/v1/x`` to ``/base/v1/x``.

What reaches the caller: status, reason and headers as the upstream sent them, the body
byte for byte (``Content-Encoding`` is never decoded), redirects passed back, not
followed. Never forwarded either way: hop-by-hop headers and those named in
``Connection``. Not passed back: ``Server``, ``X-Powered-By`` and ``Date`` (they name the
backend, and the gateway's server adds its own ``Server`` and ``Date``). A ``Location``
pointing into the backend becomes a path on the gateway (``http://h/base/login`` becomes
``/sandbox/login``), so no response names the backend's host.

Failures (contract §8): refused or reset before a response started raises
:class:`~envroute.errors.BackendUnavailable` (502; not retryable once a body byte was
sent), a connect or read timeout raises :class:`~envroute.errors.BackendTimeout` (504),
both before ``start_response``, so the gateway can fail over. ``timeout`` bounds the wait
for the response to start and between two reads of it, not the whole transfer. An
upstream that dies mid-response is logged on ``envroute`` and the iterator raises, which
makes the WSGI server drop the caller's connection: a truncated body is never passed off
as a complete one.

Connections: one ``requests.Session`` per backend per process, made on first use in
that process (gunicorn forks workers after importing the app, and sockets must not be
shared across a fork), with a keep-alive pool of ``pool_size`` connections (default
:data:`DEFAULT_POOL_SIZE`; set it to at least gunicorn's ``--threads``: busier moments
open extra connections that are closed after use). Environment proxies (``HTTP_PROXY``)
and cookies are ignored: the gateway talks to its backends directly and keeps no state
between callers. TLS is verified against certifi's CA bundle, or the one named by
``REQUESTS_CA_BUNDLE``.

Security: the connection always goes to the configured scheme, host and port. The
upstream URL is that origin followed by a path this module encodes itself, so
absolute-form request targets, ``//host`` paths, ``@``, ``%2F%2F``, backslashes,
``Host`` or ``X-Forwarded-Host`` cannot send a request anywhere else.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import IO
from urllib.parse import quote, unquote_to_bytes, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.util import SKIP_HEADER

from .errors import BackendTimeout, BackendUnavailable, ConfigError
from .settings import BackendSettings
from .signing import identity_headers
from .typing import HeaderList, StartResponse, WSGIEnvironment

logger = logging.getLogger("envroute")

#: Keep-alive connections per backend per process when ``pool_size`` is 0. gunicorn's
#: gthread workers rarely run more threads than this; raise ``pool_size`` if yours do.
DEFAULT_POOL_SIZE = 32
#: Most bytes read from the caller or the upstream at a time: memory stays flat whatever
#: the body's size. Measured under gunicorn: 64 KiB reads of ``wsgi.input`` cost twice the
#: CPU of 256 KiB reads and halve upload throughput; larger reads gain nothing more.
CHUNK_SIZE = 256 * 1024

#: RFC 9110 §7.6.1, plus the non-standard ``Proxy-Connection``.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade"})
#: Request headers this proxy sets itself (``Host``: the upstream's; ``Expect``: the
#: gateway's server has already answered it).
_NOT_FORWARDED = frozenset({"host", "expect", "content-length", "content-type"})
#: Response headers that would name the backend, or that the gateway's server sets.
_NOT_RETURNED = frozenset({"server", "x-powered-by", "date"})
_NO_BODY_STATUSES = frozenset({204, 304})

#: RFC 3986 pchar without ``%`` (escapes are checked separately), and the query's extra.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_UNSAFE_PATH = re.compile(r"%(?![0-9A-Fa-f]{2})|[^A-Za-z0-9%" + re.escape(_PATH_SAFE) + "]")
_UNSAFE_QUERY = re.compile(r"%(?![0-9A-Fa-f]{2})|[^A-Za-z0-9%" + re.escape(_QUERY_SAFE) + "]")
_LEADING_SLASHES = re.compile(r"^[/\\]+")


def _escape(match: re.Match[str]) -> str:
    return quote(match.group().encode("latin-1", "surrogateescape"), safe="")


def _unquote(raw: str) -> str:
    """Percent-decoded as a WSGI server decodes ``PATH_INFO`` (bytes as latin-1)."""
    return unquote_to_bytes(raw).decode("latin-1")


def upstream_path(environ: WSGIEnvironment, strip_prefix: str = "") -> str:
    """The percent-encoded path to send upstream, before the backend URL's own path.

    The raw path from ``RAW_URI``/``REQUEST_URI`` is used when it decodes to exactly
    ``SCRIPT_NAME + PATH_INFO`` (so an absolute-form target or a rewritten ``PATH_INFO``
    falls back to re-quoting ``PATH_INFO``). ``SCRIPT_NAME`` and ``strip_prefix`` are cut
    at a segment boundary. The result always starts with ``/`` or is empty, and holds
    only characters valid in a URL path: ``?``, ``#``, ``\\`` and spaces are escaped.
    """
    script = environ.get("SCRIPT_NAME", "")
    path_info = environ.get("PATH_INFO", "")
    drop, rest = script, path_info
    if strip_prefix and (path_info == strip_prefix or path_info.startswith(strip_prefix + "/")):
        drop, rest = script + strip_prefix, path_info[len(strip_prefix):]
    raw = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or "").partition("?")[0]
    encoded: str | None = None
    if raw.startswith("/") and _unquote(raw) == script + path_info:
        encoded = _raw_after(raw, drop)
    if encoded is None:
        encoded = quote(rest.encode("latin-1", "surrogateescape"), safe=_PATH_SAFE)
    encoded = _UNSAFE_PATH.sub(_escape, encoded)
    return encoded if not encoded or encoded.startswith("/") else "/" + encoded


def _raw_after(raw: str, decoded_prefix: str) -> str | None:
    """What follows the part of ``raw`` that decodes to ``decoded_prefix``, if any."""
    if not decoded_prefix:
        return raw
    for index in [i for i, c in enumerate(raw) if c == "/"] + [len(raw)]:
        if index and _unquote(raw[:index]) == decoded_prefix:
            return raw[index:]
    return None


def upstream_query(environ: WSGIEnvironment) -> str:
    """``QUERY_STRING`` as sent (after the gateway removed any credential), made URL-safe."""
    return _UNSAFE_QUERY.sub(_escape, environ.get("QUERY_STRING", ""))


def _connection_tokens(value: str) -> frozenset[str]:
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def _append(existing: str | None, value: str) -> str:
    return f"{existing}, {value}" if existing else value


class ProxyBackend:
    """The WSGI app for one URL backend; see the module docstring for what it forwards."""

    def __init__(self, backend: BackendSettings, *, signing_secret: str = "") -> None:
        url = urlsplit(backend.url)
        key = f"backends.{backend.name}.url"
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"{backend.url!r} is not an http:// or https:// URL", key=key)
        if url.username is not None or url.password is not None:
            raise ConfigError("credentials in a backend URL are not supported", key=key)
        if url.query or url.fragment:
            raise ConfigError("a backend URL takes no query string or fragment", key=key)
        try:
            url.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            raise ConfigError(f"{backend.url!r} has an invalid port", key=key) from None
        self.name = backend.name
        self.settings = backend
        self.origin = f"{url.scheme}://{url.netloc}"
        self.base_path = quote(url.path.rstrip("/"), safe=_PATH_SAFE + "%")
        self.strip_prefix = backend.strip_prefix
        self.timeout = (backend.connect_timeout, backend.timeout)
        self.pool_size = backend.pool_size or DEFAULT_POOL_SIZE
        self._signing_secret = signing_secret
        self._default_port = 443 if url.scheme == "https" else 80
        self._host = (url.hostname, url.port or self._default_port)
        self._lock = threading.Lock()
        self._pid = 0
        self._session: requests.Session | None = None
        self._adapter: HTTPAdapter | None = None

    def __repr__(self) -> str:
        return f"ProxyBackend({self.name!r}, {self.origin + self.base_path!r})"

    # -- connections ------------------------------------------------------------------

    def _connection(self) -> HTTPAdapter:
        """This process's adapter (and its keep-alive pool), made on first use after a fork."""
        adapter = self._adapter
        if adapter is not None and self._pid == os.getpid():
            return adapter
        with self._lock:
            if self._adapter is None or self._pid != os.getpid():
                session = requests.Session()
                session.trust_env = False
                adapter = _ProxyAdapter(pool_connections=1, pool_maxsize=self.pool_size,
                                        max_retries=0)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                self._session, self._adapter, self._pid = session, adapter, os.getpid()
            return self._adapter

    def close(self) -> None:
        """Close this process's pooled connections (a later request opens new ones)."""
        with self._lock:
            if self._session is not None and self._pid == os.getpid():
                self._session.close()
            self._session = self._adapter = None

    def _send(self, request: requests.PreparedRequest) -> requests.Response:
        verify: bool | str = os.environ.get("REQUESTS_CA_BUNDLE") or True
        # The adapter directly, not Session.send: no cookie jar shared between callers,
        # no redirects followed, no environment proxies, no hooks.
        return self._connection().send(request, stream=True, timeout=self.timeout,
                                       verify=verify, proxies={})

    # -- the request ------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        body = _RequestBody.from_environ(environ)
        request = requests.PreparedRequest()
        request.method = method
        request.url = self.url_for(environ)
        request.headers = CaseInsensitiveDict(self.request_headers(environ, body))
        # An iterable body streams (urllib3 sends it chunked unless Content-Length is set).
        request.body = body if body else None  # type: ignore[assignment]
        request.hooks = {"response": []}
        try:
            response = self._send(request)
        except _ClientBodyError as exc:
            raise BackendUnavailable(f"the caller's request body broke off ({exc})",
                                     backend=self.name, retryable=False) from None
        except Exception as exc:  # every requests/urllib3/socket error becomes ours
            raise self._translate(exc, retryable=not body.started) from None
        try:
            status, headers = self.response_head(response, environ)
        except Exception:
            response.close()
            raise
        raw: urllib3.BaseHTTPResponse = response.raw
        if method == "HEAD" or response.status_code in _NO_BODY_STATUSES:
            start_response(status, headers)
            _finish(raw)
            return []
        start_response(status, headers)
        return _ResponseBody(raw, self.name)

    def url_for(self, environ: WSGIEnvironment) -> str:
        """The upstream URL: the backend's origin and path fixed, then the request's path."""
        path = self.base_path + upstream_path(environ, self.strip_prefix)
        query = upstream_query(environ)
        return self.origin + (path or "/") + (f"?{query}" if query else "")

    def request_headers(self, environ: WSGIEnvironment,
                        body: _RequestBody | None = None) -> dict[str, str]:
        """End-to-end headers from the caller, then the identity and forwarding headers."""
        dropped = _connection_tokens(environ.get("HTTP_CONNECTION", ""))
        headers: dict[str, str] = {}
        for key, value in environ.items():
            if not key.startswith("HTTP_"):
                continue
            name = key[5:].replace("_", "-").title()
            lower = name.lower()
            if (lower in HOP_BY_HOP or lower in _NOT_FORWARDED or lower in dropped
                    or lower.startswith("envroute-")):
                continue
            headers[name] = value
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        if body and body.length is not None:
            headers["Content-Length"] = str(body.length)
        # urllib3 would add its own; the caller's (or none) is what the backend should see.
        headers.setdefault("User-Agent", SKIP_HEADER)
        headers.setdefault("Accept-Encoding", SKIP_HEADER)
        identity = environ.get("envroute.identity")
        if identity is not None:
            headers.update(identity_headers(identity.key_id, identity.environment,
                                            identity.metadata, self._signing_secret,
                                            customer_id=identity.customer_id))
        request_id = environ.get("envroute.request_id")
        if request_id:
            headers["Envroute-Request-Id"] = request_id
        headers["X-Forwarded-For"] = _append(headers.get("X-Forwarded-For"),
                                             environ.get("REMOTE_ADDR", "") or "unknown")
        headers["X-Forwarded-Proto"] = _append(headers.get("X-Forwarded-Proto"),
                                               environ.get("wsgi.url_scheme", "http"))
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        if host:
            headers["X-Forwarded-Host"] = _append(headers.get("X-Forwarded-Host"), host)
        return headers

    def response_head(self, response: requests.Response,
                      environ: WSGIEnvironment) -> tuple[str, HeaderList]:
        """The status line and the headers to pass back to the caller."""
        reason = response.reason or _phrase(response.status_code)
        raw_headers = response.raw.headers
        dropped = _connection_tokens(", ".join(raw_headers.getlist("Connection")))
        headers: HeaderList = []
        for name, value in raw_headers.items():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in _NOT_RETURNED or lower in dropped:
                continue
            if "\n" in value or "\r" in value:  # obsolete line folding (RFC 9112 §5.2)
                value = " ".join(value.split())
            if lower == "location":
                value = self.rewrite_location(value, environ)
            headers.append((name, value))
        return f"{response.status_code} {reason}", headers

    def rewrite_location(self, location: str, environ: WSGIEnvironment) -> str:
        """A ``Location`` into this backend, as a path on the gateway; others unchanged.

        Absolute URLs at the backend's origin and paths under the backend URL's path
        are mapped back under ``SCRIPT_NAME`` and ``strip_prefix``. The result never
        starts with ``//`` or ``/\\``, which browsers would read as another host.
        """
        try:
            parts = urlsplit(location)
            port = parts.port
        except ValueError:
            return location
        if parts.netloc:
            scheme = (parts.scheme or self.origin.partition(":")[0]).lower()
            default = 443 if scheme == "https" else 80
            if (scheme != self.origin.partition(":")[0]
                    or (parts.hostname, port or default) != self._host):
                return location
        elif parts.scheme or not parts.path.startswith("/"):
            return location
        path = parts.path
        base = self.base_path
        if base and (path == base or path.startswith(base + "/")):
            path = environ.get("SCRIPT_NAME", "") + self.strip_prefix + path[len(base):]
        elif not base:
            path = environ.get("SCRIPT_NAME", "") + self.strip_prefix + path
        path = _LEADING_SLASHES.sub("/", path) or "/"
        return path + (f"?{parts.query}" if parts.query else "") + (
            f"#{parts.fragment}" if parts.fragment else "")

    def _translate(self, exc: Exception, *, retryable: bool) -> Exception:
        """requests' adapters.py style: one envroute error for every lower-level one.

        Messages name the upstream's host and port (for the operator's log) and never the
        request's path or query string, which requests' own messages repeat.
        """
        where = self.origin.partition("://")[2]
        if isinstance(exc, requests.Timeout | urllib3.exceptions.TimeoutError | TimeoutError):
            if isinstance(exc, requests.ConnectTimeout):
                message = f"timed out connecting to {where} (after {self.timeout[0]:g} s)"
            else:
                message = f"{where} sent nothing for {self.timeout[1]:g} s"
            return BackendTimeout(message, backend=self.name)
        if any(isinstance(e, urllib3.exceptions.NewConnectionError) for e in _chain(exc)):
            message = f"cannot connect to {where}: {_reason(exc)}"
        else:
            message = f"connection to {where} failed: {_reason(exc)}"
        return BackendUnavailable(message, backend=self.name, retryable=retryable)

    # -- envroute check ---------------------------------------------------------------

    def check(self) -> str:
        """Reach the backend and describe it in one line; any HTTP answer counts.

        Sends ``HEAD`` to the backend URL with its timeouts and no identity headers.
        Raises :class:`BackendUnavailable` or :class:`BackendTimeout` when unreachable.
        """
        request = requests.PreparedRequest()
        request.method = "HEAD"
        request.url = self.origin + (self.base_path or "/")
        request.headers = CaseInsensitiveDict({"User-Agent": "envroute-check"})
        request.body = None
        request.hooks = {"response": []}
        started = time.perf_counter()
        try:
            response = self._send(request)
        except Exception as exc:
            raise self._translate(exc, retryable=True) from None
        elapsed = (time.perf_counter() - started) * 1000
        with response:
            status = f"{response.status_code} {response.reason or _phrase(response.status_code)}"
        return f"{self.origin}{self.base_path or '/'} answered {status} in {elapsed:.0f} ms"


class _ProxyAdapter(HTTPAdapter):
    """requests' adapter, minus what a proxy never uses on the response side.

    ``HTTPAdapter.build_response`` copies the headers into a dict and runs the cookie
    machinery on every response; the proxy reads status, reason and the raw urllib3
    response only, so skipping both saves a measurable share of its per-request CPU.
    """

    def build_response(self, req: requests.PreparedRequest,
                       resp: urllib3.BaseHTTPResponse) -> requests.Response:
        response = requests.Response()
        response.status_code = resp.status
        response.reason = resp.reason  # type: ignore[assignment]  # None when absent
        response.raw = resp
        response.url = req.url or ""
        response.request = req
        response.connection = self
        return response


class _ClientBodyError(Exception):
    """Reading the caller's body failed (it hung up or sent too little). Deliberately not
    an ``OSError``, so that urllib3 lets it through instead of blaming the upstream."""


class _RequestBody:
    """The caller's body as an iterable of chunks, read from ``wsgi.input`` on demand.

    ``length`` is ``CONTENT_LENGTH`` (sent as is) or ``None`` for a chunked body
    (``wsgi.input_terminated`` with ``Transfer-Encoding: chunked``), which goes upstream
    chunked. ``started`` becomes true once a byte has been handed on: from then on the
    request cannot be replayed to another backend.
    """

    __slots__ = ("length", "started", "stream")

    def __init__(self, stream: IO[bytes] | None, length: int | None) -> None:
        self.stream = stream
        self.length = length
        self.started = False

    @classmethod
    def from_environ(cls, environ: WSGIEnvironment) -> _RequestBody:
        stream = environ.get("wsgi.input")
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if length >= 0:
            return cls(stream, length)
        if (environ.get("wsgi.input_terminated")
                and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()):
            return cls(stream, None)
        return cls(None, 0)

    def __bool__(self) -> bool:
        return self.stream is not None and self.length != 0

    def __iter__(self) -> Iterator[bytes]:
        if not self:
            return
        assert self.stream is not None
        remaining = self.length
        while remaining is None or remaining > 0:
            size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
            try:
                chunk = self.stream.read(size)
            except Exception as exc:
                raise _ClientBodyError(type(exc).__name__) from exc
            if not chunk:
                if remaining is None:
                    return
                raise _ClientBodyError(f"{remaining} bytes short of Content-Length")
            if remaining is not None:
                remaining -= len(chunk)
            self.started = True
            yield chunk


class _ResponseBody:
    """The upstream's body, piece by piece as it arrives; raises if the upstream dies."""

    __slots__ = ("_backend", "_raw", "_sent")

    def __init__(self, raw: urllib3.BaseHTTPResponse, backend: str) -> None:
        self._raw = raw
        self._backend = backend
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        raw = self._raw
        try:
            while True:
                chunk = raw.read1(CHUNK_SIZE, decode_content=False)
                if not chunk:
                    return
                self._sent += len(chunk)
                yield chunk
        except Exception as exc:
            logger.warning("backend %s broke off its response after %d bytes (%s); "
                           "closing the connection to the caller", self._backend,
                           self._sent, _reason(exc))
            raise BackendUnavailable(f"response broke off ({_reason(exc)})",
                                     backend=self._backend, retryable=False) from None

    def close(self) -> None:
        # Read to the end, the connection is already back in the pool; otherwise (the
        # caller went away, the upstream broke) it must not be reused: close it, and give
        # its pool slot back (as requests' Response.close does).
        self._raw.close()
        self._raw.release_conn()


def _finish(raw: urllib3.BaseHTTPResponse) -> None:
    """Return a body-less response's connection to the pool (or close it if unsure)."""
    try:
        raw.read(decode_content=False)
        raw.release_conn()
    except Exception:
        raw.close()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: urllib3's ``reason``, requests' ``args``, causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        nested = reason if isinstance(reason, BaseException) else None
        if nested is None:
            nested = next((a for a in current.args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason: the innermost OS error, else the exception's type."""
    for current in _chain(exc):
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        if isinstance(current, http.client.IncompleteRead):
            return "connection closed before the end of the body"
        if isinstance(current, http.client.RemoteDisconnected):
            return "connection closed without a response"
    return type(exc).__name__
