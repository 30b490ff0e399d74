"""``ProxyBackend``: a streaming reverse proxy to one upstream URL.

A ``[backends.NAME] url = "http://host:port/base"`` backend is a WSGI app that forwards
the request to that upstream and streams the answer back, in both directions, without
holding a body in memory: the request body is read from ``wsgi.input`` in 256 KiB pieces
as it is sent upstream (with its ``Content-Length``, or chunked when the caller sent it
chunked), and the response is passed on as each piece arrives.

What reaches the upstream (contract §7): the method, the path with its percent-encoding
as sent (``RAW_URI``/``REQUEST_URI`` when the server provides them; the hex of
percent-escapes is upper-cased, an equivalence of RFC 3986 §6.2.2.1, and characters that
are invalid in a URL are escaped), the query string, the body and end-to-end headers; the
identity as ``Envroute-Key-Id``, ``Envroute-Environment``, ``Envroute-Metadata``,
``Envroute-Customer-Id`` (when the identity has a customer) and, with
``signing_secret``, ``Envroute-Signature`` (see :mod:`envroute.signing`);
``Envroute-Request-Id``; ``X-Forwarded-For/Proto/Host`` appended to any the caller sent.
``Host`` is the upstream's own. ``strip_prefix`` is removed from the path and the URL's
path is put in front: ``url = "http://h/base"`` with ``strip_prefix = "/sandbox"`` sends
``/sandbox/v1/x`` to ``/base/v1/x``.

What reaches the caller: status, reason and headers as the upstream sent them, the body
byte for byte (``Content-Encoding`` is never decoded), redirects passed back, not
followed. Never forwarded either way: hop-by-hop headers and those named in
``Connection``. Not passed back: ``Server``, ``X-Powered-By`` and ``Date`` (they name the
backend, and the gateway's server adds its own ``Server`` and ``Date``). A ``Location``,
``Content-Location``, ``Link`` or ``Refresh`` pointing into the backend becomes a path on
the gateway (``http://h/base/login`` becomes ``/sandbox/login``); a ``Content-Location``,
``Link`` or ``Refresh`` that still names the backend's host is dropped, so no response
names it. Framing is never ambiguous: ``Transfer-Encoding: chunked`` with a
``Content-Length`` loses the ``Content-Length``; any other transfer coding or disagreeing
``Content-Length`` values are a ``502`` (see :mod:`envroute.proxy.headers`).

Failures (contract §8): refused or reset before a response started raises
:class:`~envroute.errors.BackendUnavailable` (502; not retryable once a body byte was
sent), a connect or read timeout raises :class:`~envroute.errors.BackendTimeout` (504),
both before ``start_response``, so the gateway can fail over. The first piece of the body
is read before ``start_response`` too, so an upstream that sends its head and then dies
is still a ``502`` problem, never the WSGI server's own ``500``. A request body the
caller breaks (bad chunked encoding, too short) raises
:class:`~envroute.errors.BadRequestBody` (``400 invalid_request``), never blamed on the
backend. ``timeout`` bounds the wait for the response to start and between two reads of
it, not the whole transfer. An upstream that dies mid-response is logged on ``envroute``
and the iterator raises, which makes the WSGI server drop the caller's connection: a
truncated body is never passed off as a complete one.

Connections: one requests adapter (no ``Session``) per backend per process, made on
first use in that process (gunicorn forks workers after importing the app, and sockets
must not be shared across a fork); requests configures the urllib3 pool with its TLS and
CA handling once, and that pool makes every new connection. Requests and responses then
go over the kept-alive connections with the proxy's own lean HTTP/1.1 client
(:mod:`.wire`): the request head in one ``sendall``, the response head split in one
piece, no ``http.client`` or urllib3 machinery per request (see :mod:`.pool`).
``pool_size`` connections are kept (default :data:`DEFAULT_POOL_SIZE`, 256 under gevent;
set it to at least gunicorn's ``--threads``: busier moments open extra connections that
are closed after use). An idle connection is checked for a close by the upstream before
it is reused, without waiting (under gevent, without a trip through its hub); one whose
response was not read to the end, or after ``Connection: close``, is never reused. A
response the proxy cannot read as HTTP/1.1 (see :mod:`.wirehead`, :mod:`.wire`) is a
``502``. Environment proxies (``HTTP_PROXY``) and cookies are ignored: the gateway talks
to its backends directly and keeps no state between callers. TLS is verified against
certifi's CA bundle, or the one named by ``REQUESTS_CA_BUNDLE`` (read once, when the
backend is built).

The parts, one job each: :mod:`.urls` (where a request goes; URLs coming back),
:mod:`.headers` (which headers cross; framing), :mod:`.bodies` (streams both ways),
:mod:`.pool` (keep-alive connections), :mod:`.wire` (HTTP/1.1 on one connection),
:mod:`.wirehead` (the response head read from it), :mod:`.failures` (errors by type) and
:mod:`.backend` (:class:`ProxyBackend`, putting them together).

Security: the connection always goes to the configured scheme, host and port. The
upstream URL is that origin followed by a path this module encodes itself, so
absolute-form request targets, ``//host`` paths, ``@``, ``%2F%2F``, backslashes,
``Host`` or ``X-Forwarded-Host`` cannot send a request anywhere else.
"""

from __future__ import annotations

from ..names import HOP_BY_HOP
from .backend import ProxyBackend
from .bodies import CHUNK_SIZE
from .pool import DEFAULT_POOL_SIZE
from .urls import upstream_path, upstream_query

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_POOL_SIZE",
    "HOP_BY_HOP",
    "ProxyBackend",
    "upstream_path",
    "upstream_query",
]
