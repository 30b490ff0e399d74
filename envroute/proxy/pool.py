"""This process's keep-alive connections to one upstream, built by requests' adapter.

One :class:`requests.adapters.HTTPAdapter` per backend per process, made on first use in
that process: gunicorn forks workers after importing the app, and sockets must not be
shared across a fork. The adapter builds the urllib3 connection pool for the backend's
origin once, with requests' TLS and CA handling (``get_connection_with_tls_context`` and
``cert_verify``: certifi's bundle, or the one ``REQUESTS_CA_BUNDLE`` names, read once when
the backend is built rather than per request). Each request then goes to that pool's
``urlopen`` with exactly the arguments requests' ``HTTPAdapter.send`` passes
(``redirect=False``, ``preload_content=False``, ``decode_content=False``, no retries), so
the bytes on the wire are the same, without re-deriving per request what never changes
for one origin (URL parsing, the pool key, proxy selection, TLS settings, a
``PreparedRequest``): a third of the proxy's CPU per request.

No ``requests.Session``: no cookie jar is shared between callers, no redirect is
followed, no environment proxy (``HTTP_PROXY``) is used and no hook runs. The pool keeps
``pool_size`` connections (default :data:`DEFAULT_POOL_SIZE`; set it to at least
gunicorn's ``--threads``: busier moments open extra connections that are closed after
use).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util import Retry, Timeout

#: Keep-alive connections per backend per process when ``pool_size`` is 0. gunicorn's
#: gthread workers rarely run more threads than this; raise ``pool_size`` if yours do.
DEFAULT_POOL_SIZE = 32
#: The default under gevent's monkey-patching (gunicorn ``-k gevent``): a worker runs a
#: greenlet per connection (up to ``--worker-connections``), each may hold an upstream
#: connection while the upstream answers; a pool of 32 would close and reopen the rest.
GEVENT_POOL_SIZE = 256
#: requests' ``max_retries=0``: never resend (a request must never be sent twice), and
#: let read errors through as they are.
_NO_RETRIES = Retry(0, read=False)


def default_pool_size() -> int:
    """:data:`GEVENT_POOL_SIZE` when gevent has patched ``socket`` (never imports gevent),
    else :data:`DEFAULT_POOL_SIZE`. gunicorn's gevent worker patches before it loads the
    app, so the backend is built knowing; with ``--preload`` it is not: set ``pool_size``."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        return GEVENT_POOL_SIZE
    return DEFAULT_POOL_SIZE


class ConnectionPool:
    """Sends requests to one upstream over this process's keep-alive pool."""

    def __init__(self, origin: str, size: int, timeouts: tuple[float, float]) -> None:
        self.origin = origin
        self.size = size or default_pool_size()
        self.timeouts = timeouts
        self.timeout = Timeout(connect=timeouts[0], read=timeouts[1])
        self.verify: bool | str = os.environ.get("REQUESTS_CA_BUNDLE") or True
        self._lock = threading.Lock()
        self._pid = 0
        self._adapter: HTTPAdapter | None = None
        self._pool: urllib3.HTTPConnectionPool | None = None

    def adapter(self) -> HTTPAdapter:
        """This process's adapter, made on first use after a fork."""
        self.connections()
        assert self._adapter is not None
        return self._adapter

    def connections(self) -> urllib3.HTTPConnectionPool:
        """This process's urllib3 pool for the origin, built by requests' adapter."""
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.size,
                                      max_retries=0)
                probe = requests.PreparedRequest()
                probe.prepare(method="GET", url=self.origin + "/")
                built: Any = adapter.get_connection_with_tls_context(probe, self.verify, {},
                                                                     None)
                adapter.cert_verify(  # type: ignore[no-untyped-call]
                    built, probe.url or self.origin, self.verify, None)
                self._adapter, self._pool, self._pid = adapter, built, os.getpid()
            assert self._pool is not None
            return self._pool

    def urlopen(self, method: str, target: str, headers: Mapping[str, str],
                body: Iterable[bytes] | None) -> urllib3.BaseHTTPResponse:
        """The response, streamed: its body is still on the wire. ``target`` is the path
        and query; an iterable ``body`` without ``Content-Length`` goes chunked."""
        return self.connections().urlopen(
            method, target, body=body, headers=headers,
            redirect=False, assert_same_host=False, preload_content=False,
            decode_content=False, retries=_NO_RETRIES, timeout=self.timeout,
            chunked=body is not None and "Content-Length" not in headers)

    def close(self) -> None:
        """Close this process's pooled connections (a later request opens new ones)."""
        with self._lock:
            if self._adapter is not None and self._pid == os.getpid():
                self._adapter.close()
            self._adapter = self._pool = None
