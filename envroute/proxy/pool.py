"""This process's keep-alive connections to one upstream, through requests' adapter.

One :class:`requests.adapters.HTTPAdapter` per backend per process, made on first use in
that process: gunicorn forks workers after importing the app, and sockets must not be
shared across a fork. No ``requests.Session``: the proxy sends through the adapter
directly, so no cookie jar is shared between callers, no redirect is followed, no
environment proxy (``HTTP_PROXY``) is used and no hook runs. The pool keeps
``pool_size`` connections (default :data:`DEFAULT_POOL_SIZE`; set it to at least
gunicorn's ``--threads``: busier moments open extra connections that are closed after
use). TLS is verified against certifi's CA bundle, or the one ``REQUESTS_CA_BUNDLE``
names, resolved once when the backend is built rather than per request.
"""

from __future__ import annotations

import os
import threading

import requests
import urllib3
from requests.adapters import HTTPAdapter

#: Keep-alive connections per backend per process when ``pool_size`` is 0. gunicorn's
#: gthread workers rarely run more threads than this; raise ``pool_size`` if yours do.
DEFAULT_POOL_SIZE = 32


class ProxyAdapter(HTTPAdapter):
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


class ConnectionPool:
    """Sends prepared requests to one upstream over this process's keep-alive pool."""

    def __init__(self, size: int, timeouts: tuple[float, float]) -> None:
        self.size = size or DEFAULT_POOL_SIZE
        self.timeouts = timeouts
        self.verify: bool | str = os.environ.get("REQUESTS_CA_BUNDLE") or True
        self._lock = threading.Lock()
        self._pid = 0
        self._adapter: ProxyAdapter | None = None

    def adapter(self) -> ProxyAdapter:
        """This process's adapter (and its pool), made on first use after a fork."""
        adapter = self._adapter
        if adapter is not None and self._pid == os.getpid():
            return adapter
        with self._lock:
            if self._adapter is None or self._pid != os.getpid():
                self._adapter = ProxyAdapter(pool_connections=1, pool_maxsize=self.size,
                                             max_retries=0)
                self._pid = os.getpid()
            return self._adapter

    def send(self, request: requests.PreparedRequest) -> requests.Response:
        """The response, streamed: the body is still on the wire."""
        return self.adapter().send(request, stream=True, timeout=self.timeouts,
                                   verify=self.verify, proxies={})

    def close(self) -> None:
        """Close this process's pooled connections (a later request opens new ones)."""
        with self._lock:
            if self._adapter is not None and self._pid == os.getpid():
                self._adapter.close()
            self._adapter = None
