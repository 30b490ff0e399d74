"""Which headers cross the proxy, both ways (contract §7).

To the upstream: the caller's end-to-end headers (werkzeug's :class:`EnvironHeaders`),
minus hop-by-hop headers, those the caller's ``Connection`` names, every ``Envroute-*``
header (only the gateway may set them) and those the proxy sets itself; then the identity
headers (:mod:`envroute.signing`), ``Envroute-Request-Id`` and ``X-Forwarded-*``, appended
to any the caller sent. The caller's ``User-Agent`` and ``Accept-Encoding`` (or none) are
what the upstream sees: urllib3 adds none of its own.

To the caller: the upstream's headers minus hop-by-hop ones, those its ``Connection``
names, and ``Server``, ``X-Powered-By`` and ``Date`` (they name the backend; the
gateway's server sets its own). URLs at the backend's origin are rewritten
(:meth:`~envroute.proxy.urls.Upstream.rewrite_header`).

Framing, the smuggling risk: a response whose length the gateway could pass on wrongly
is never passed on. ``Transfer-Encoding: chunked`` with a ``Content-Length`` drops the
``Content-Length`` (RFC 9112 §6.3: the chunked framing wins, and an intermediary must
remove the length before forwarding; the caller's server re-frames the body); any other
transfer coding, or ``Content-Length`` values that disagree or are not numbers, is a
``502``: the gateway cannot tell where the body ends, and the caller must not guess.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from urllib3.util import SKIP_HEADER
from werkzeug.datastructures import EnvironHeaders
from werkzeug.http import is_hop_by_hop_header, parse_list_header

from ..errors import BackendUnavailable
from ..names import HOP_BY_HOP, IDENTITY_KEY, REQUEST_ID_KEY
from ..signing import identity_headers
from ..typing import HeaderList, WSGIEnvironment

if TYPE_CHECKING:
    from urllib3 import HTTPHeaderDict

    from .urls import Upstream

#: Request headers this proxy sets itself (``Host``: the upstream's; ``Expect``: the
#: gateway's server has already answered it; the body's framing: the proxy's own).
_NOT_FORWARDED = frozenset({"host", "expect", "content-length", "transfer-encoding"})
#: Response headers that would name the backend, or that the gateway's server sets.
_NOT_RETURNED = frozenset({"server", "x-powered-by", "date"})
#: Response headers whose values may be URLs into the backend.
_URL_HEADERS = frozenset({"location", "content-location", "link", "refresh"})


def _hop_by_hop(lower: str) -> bool:
    return lower in HOP_BY_HOP or is_hop_by_hop_header(lower)


def _connection_tokens(values: list[str]) -> frozenset[str]:
    """The header names a ``Connection`` header lists (they are hop-by-hop too)."""
    return frozenset(token.strip().lower() for value in values
                     for token in parse_list_header(value) if token.strip())


def _append(existing: str | None, value: str) -> str:
    return f"{existing}, {value}" if existing else value


def request_headers(environ: WSGIEnvironment, *, signing_secret: str = "",
                    content_length: int | None = None) -> dict[str, str]:
    """End-to-end headers from the caller, then the identity and forwarding headers."""
    connection = environ.get("HTTP_CONNECTION")
    dropped = _connection_tokens([connection]) if connection else frozenset()
    headers: dict[str, str] = {}
    for name, value in EnvironHeaders(environ):
        lower = name.lower()
        if (lower in _NOT_FORWARDED or lower.startswith("envroute-") or _hop_by_hop(lower)
                or lower in dropped):
            continue
        headers[name] = value
    if content_length is not None:
        headers["Content-Length"] = str(content_length)
    # urllib3 would add its own; the caller's (or none) is what the backend should see.
    headers.setdefault("User-Agent", SKIP_HEADER)
    headers.setdefault("Accept-Encoding", SKIP_HEADER)
    identity = environ.get(IDENTITY_KEY)
    if identity is not None:
        headers.update(identity_headers(identity.key_id, identity.environment,
                                        identity.metadata, signing_secret,
                                        customer_id=identity.customer_id))
    request_id = environ.get(REQUEST_ID_KEY)
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


def response_headers(raw: HTTPHeaderDict, upstream: Upstream, environ: WSGIEnvironment,
                     *, backend: str) -> HeaderList:
    """The headers to pass back to the caller; :class:`BackendUnavailable` (502) when the
    upstream's framing is ambiguous (see the module docstring)."""
    dropped = _connection_tokens(raw.getlist("Connection"))
    lengths = raw.getlist("Content-Length")
    encodings = raw.getlist("Transfer-Encoding")
    length = _framing(lengths, encodings, backend) if lengths or encodings else None
    headers: HeaderList = []
    for name, value in raw.items():
        lower = name.lower()
        if lower in _NOT_RETURNED or _hop_by_hop(lower) or lower in dropped:
            continue
        if lower == "content-length":
            if length is not None:
                headers.append((name, length))
                length = None  # one Content-Length line, however many the upstream sent
            continue
        if "\n" in value or "\r" in value:  # obsolete line folding (RFC 9112 §5.2)
            value = " ".join(value.split())
        if lower in _URL_HEADERS:
            rewritten = upstream.rewrite_header(lower, value, environ)
            if rewritten is None:
                continue
            value = rewritten
        headers.append((name, value))
    return headers


def _framing(lengths: list[str], encodings: list[str], backend: str) -> str | None:
    """The one ``Content-Length`` to pass on (None: none), or a 502 for ambiguity."""
    if encodings:
        codings = [c.strip().lower() for value in encodings for c in value.split(",")]
        if codings != ["chunked"]:
            raise BackendUnavailable(f"the response's Transfer-Encoding {codings!r} "
                                     "cannot be passed on safely", backend=backend,
                                     retryable=False)
        return None  # chunked wins; the caller's server frames the body itself
    values = {v.strip() for value in lengths for v in value.split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit() or not next(
            iter(values)).isascii():
        raise BackendUnavailable("the response's Content-Length values disagree",
                                 backend=backend, retryable=False)
    return values.pop()
