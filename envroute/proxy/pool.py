"""This process's keep-alive connections to one upstream, made with requests' TLS settings.

One :class:`requests.adapters.HTTPAdapter` per backend per process, made on first use in
that process: gunicorn forks workers after importing the app, and sockets must not be
shared across a fork. The adapter builds the urllib3 connection pool for the backend's
origin once, with requests' TLS and CA handling (``get_connection_with_tls_context`` and
``cert_verify``: certifi's bundle, or the one ``REQUESTS_CA_BUNDLE`` names, read once when
the backend is built rather than per request). That pool makes every new connection
(socket options, TLS, certificate and host name checks: urllib3's own); the request
and response then go over it with :mod:`.wire`, the proxy's lean HTTP/1.1 client,
without urllib3's and ``http.client``'s per-request machinery (a ``Timeout`` and a
``Retry`` object, an ``email`` parse of every response head, a header-by-header
``putheader``): more than half of the proxy's CPU per request.

On 64-bit Linux a plain TCP connection's reads and writes are bounded by the kernel
(``SO_RCVTIMEO``, ``SO_SNDTIMEO``, set once when it is made) instead of Python's socket
timeout, which costs a ``poll`` before every ``recv`` and ``send``; TLS and gevent's
sockets keep Python's, and a request body is sent under it (see :func:`_kernel_timeouts`).

Idle connections are kept here, last used first, ``pool_size`` of them (default
:data:`DEFAULT_POOL_SIZE`; set it to at least gunicorn's ``--threads``: busier moments
open extra connections that are closed after use). One taken from the pool is first
checked for a close (or stray bytes) from the upstream without waiting: under gevent
with a non-blocking ``recv(MSG_PEEK)`` on the real socket, never a trip through gevent's
hub; otherwise with urllib3's zero-timeout ``poll``. A connection the upstream closed is
dropped, and the request goes on a fresh one.

No ``requests.Session``: no cookie jar is shared between callers, no redirect is
followed, no environment proxy (``HTTP_PROXY``) is used and no hook runs; nothing is
retried (a request is never sent twice).
"""

from __future__ import annotations

import _socket
import contextlib
import os
import select
import socket
import ssl
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.wait import wait_for_read

from .wire import Link, Response, request_head, send

#: Keep-alive connections per backend per process when ``pool_size`` is 0. gunicorn's
#: gthread workers rarely run more threads than this; raise ``pool_size`` if yours do.
DEFAULT_POOL_SIZE = 32
#: The default under gevent's monkey-patching (gunicorn ``-k gevent``): a worker runs a
#: greenlet per connection (up to ``--worker-connections``), each may hold an upstream
#: connection while the upstream answers; a pool of 32 would close and reopen the rest.
GEVENT_POOL_SIZE = 256
#: A peek that neither waits nor consumes (where the platform has both flags).
_PEEK = getattr(socket, "MSG_PEEK", 0) | getattr(socket, "MSG_DONTWAIT", 0)
_RAW_RECV = _socket.socket.recv
_POLL = getattr(select, "poll", None)
_POLLIN = getattr(select, "POLLIN", 1)
#: 64-bit Linux, where ``struct timeval`` is two longs: a plain TCP connection's reads
#: and writes are bounded by the kernel (``SO_RCVTIMEO``, ``SO_SNDTIMEO``), see
#: :func:`_kernel_timeouts`.
_KERNEL_TIMEOUTS = (sys.platform.startswith("linux") and struct.calcsize("@l") == 8
                    and hasattr(socket, "SO_RCVTIMEO") and hasattr(socket, "SO_SNDTIMEO"))


#: Forks since this module was imported, counted in the child (``os.register_at_fork``):
#: a pool built in another process (gunicorn forks its workers after importing the app)
#: is never used, and its connections never touched. Cheaper than ``os.getpid()``, a
#: system call, twice a request.
_forks = 0


def _after_fork() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def default_pool_size() -> int:
    """:data:`GEVENT_POOL_SIZE` when gevent has patched ``socket`` (never imports gevent),
    else :data:`DEFAULT_POOL_SIZE`. gunicorn's gevent worker patches before it loads the
    app, so the backend is built knowing; with ``--preload`` it is not: set ``pool_size``."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        return GEVENT_POOL_SIZE
    return DEFAULT_POOL_SIZE


class ConnectionPool:
    """Sends requests to one upstream over this process's keep-alive connections."""

    def __init__(self, origin: str, size: int, timeouts: tuple[float, float]) -> None:
        self.origin = origin
        self.size = size or default_pool_size()
        self.timeouts = timeouts
        self.host = host_header(origin)
        self.verify: bool | str = os.environ.get("REQUESTS_CA_BUNDLE") or True
        self._lock = threading.Lock()
        self._forks = -1  # the value of :data:`_forks` in the process that built the pool
        self._adapter: HTTPAdapter | None = None
        self._pool: urllib3.HTTPConnectionPool | None = None
        self._idle: list[Link] = []

    def adapter(self) -> HTTPAdapter:
        """This process's adapter, made on first use after a fork."""
        self.connections()
        assert self._adapter is not None
        return self._adapter

    def connections(self) -> urllib3.HTTPConnectionPool:
        """This process's urllib3 pool for the origin, built by requests' adapter: it
        makes each new connection with requests' TLS and CA settings."""
        pool = self._pool
        if pool is not None and self._forks == _forks:
            return pool
        with self._lock:
            if self._pool is None or self._forks != _forks:
                adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.size,
                                      max_retries=0)
                probe = requests.PreparedRequest()
                probe.prepare(method="GET", url=self.origin + "/")
                built: Any = adapter.get_connection_with_tls_context(probe, self.verify, {},
                                                                     None)
                adapter.cert_verify(  # type: ignore[no-untyped-call]
                    built, probe.url or self.origin, self.verify, None)
                # a forked worker's inherited connections are its parent's: never used
                self._idle = []
                self._adapter, self._pool, self._forks = adapter, built, _forks
            assert self._pool is not None
            return self._pool

    def urlopen(self, method: str, target: str, headers: Mapping[str, str],
                body: Iterable[bytes] | None, checked: str = "") -> Response:
        """The response, streamed: its body is still on the wire. ``target`` is the path
        and query; an iterable ``body`` without ``Content-Length`` goes chunked;
        ``checked``: header lines already checked (see :func:`.wire.request_head`)."""
        chunked = body is not None and "Content-Length" not in headers
        head = request_head(method, target, self.host, headers, chunked=chunked,
                            checked=checked)
        link = self._take()
        try:
            complete = send(link, head, body, chunked=chunked)
            return Response(link, method, self._give_back if complete else _close)
        except BaseException:
            link.close()
            raise

    def _take(self) -> Link:
        """An idle connection the upstream has not closed, else a new one."""
        pool = self.connections()  # first, so that a fork has emptied the idle list
        idle = self._idle
        while idle:
            try:
                link = idle.pop()
            except IndexError:  # another thread took the last one
                break
            if _usable(link):
                return link
            link.close()
        conn: Any = pool._new_conn()
        conn.timeout = self.timeouts[0]
        conn.connect()  # TCP, then TLS with the adapter's settings
        sock = conn.sock
        timeout = self.timeouts[1]
        if _kernel_timeouts(sock, timeout):
            return Link(conn, sock, _quiet_check(sock), timeout)
        sock.settimeout(timeout)
        return Link(conn, sock, _quiet_check(sock))

    def _give_back(self, link: Link) -> None:
        if len(self._idle) < self.size and self._forks == _forks:
            self._idle.append(link)
        else:
            link.close()

    def close(self) -> None:
        """Close this process's pooled connections (a later request opens new ones)."""
        with self._lock:
            if self._forks == _forks:
                idle, self._idle = self._idle, []
                for link in idle:
                    link.close()
                if self._adapter is not None:
                    self._adapter.close()
            self._adapter = self._pool = None


def _close(link: Link) -> None:
    link.close()


def _usable(link: Link) -> bool:
    """Whether an idle connection is still open with nothing unread, without waiting."""
    return not link.buffer and link.quiet is not None and link.quiet()


def _quiet_check(sock: Any) -> Callable[[], bool]:
    """For one new connection's socket: a check that it is still open with nothing
    unread, without waiting. What the check needs (TLS's ``pending``, the real socket
    under gevent's, a ``poll`` object) is looked up once, here, not on every reuse."""
    pending: Callable[[], int] = getattr(sock, "pending", _nothing)  # TLS: bytes decrypted
    raw = getattr(sock, "_sock", None)  # gevent's socket wraps the real one
    if isinstance(raw, _socket.socket) and raw.gettimeout() == 0.0 and _PEEK:

        def peek() -> bool:  # under gevent: never a trip through its hub
            if pending():
                return False
            try:
                _RAW_RECV(raw, 1, _PEEK)
            except BlockingIOError:
                return True  # open, and quiet
            except OSError:
                return False
            return False  # closed by the upstream, or bytes nobody asked for

        return peek
    if _POLL is None:

        def wait() -> bool:
            try:
                return not pending() and not wait_for_read(sock, timeout=0.0)
            except (OSError, ValueError):
                return False

        return wait
    poller = _POLL()
    poller.register(sock, _POLLIN)

    def poll() -> bool:
        try:
            return not pending() and not poller.poll(0)  # readable: closed, or stray bytes
        except (OSError, ValueError):
            return False

    return poll


def _nothing() -> int:
    return 0


def _kernel_timeouts(sock: Any, timeout: float) -> bool:
    """Bound a plain TCP socket's every ``recv`` and ``send`` by ``timeout`` in the
    kernel (``SO_RCVTIMEO``, ``SO_SNDTIMEO``) and make it blocking; False (nothing done)
    for any other socket: TLS, gevent's, or where the platform is not known to take it.

    Python's own socket timeout costs a ``poll`` before every ``recv`` and ``send``; the
    kernel's bounds each call alike, without it. A call that times out fails with
    ``EAGAIN`` (:class:`BlockingIOError`), which :mod:`.failures` reads as a timeout. A
    request body is sent under Python's timeout all the same (:func:`.wire.send`), which
    bounds a whole ``sendall`` rather than each ``send``."""
    if (not _KERNEL_TIMEOUTS or not timeout or timeout <= 0
            or not isinstance(sock, _socket.socket) or isinstance(sock, ssl.SSLSocket)
            or sock.gettimeout() == 0.0):
        return False
    seconds = int(timeout)
    micros = max(round((timeout - seconds) * 1_000_000), 0 if seconds else 1)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, 0
    timeval = struct.pack("@ll", seconds, micros)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        sock.settimeout(None)
    except OSError:
        return False
    return True


def host_header(origin: str) -> str:
    """``Host`` as http.client writes it: the port only when not the scheme's default."""
    url = urlsplit(origin)
    host = url.hostname or ""
    with contextlib.suppress(UnicodeError):
        host = host.encode("idna").decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    default = 443 if url.scheme == "https" else 80
    return host if url.port in (None, default) else f"{host}:{url.port}"
