"""Which headers cross the proxy, both ways (contract §7).

To the upstream: the caller's end-to-end headers (the environ's ``HTTP_*`` keys,
``CONTENT_TYPE`` and ``CONTENT_LENGTH``, named as werkzeug's :class:`EnvironHeaders`
names them, the translation remembered per key), minus hop-by-hop headers, those the
caller's ``Connection`` names, every ``Envroute-*``
header (only the gateway may set them) and those the proxy sets itself; then the identity
headers (:mod:`envroute.signing`), ``Envroute-Request-Id`` and ``X-Forwarded-*``, appended
to any the caller sent. The caller's ``User-Agent`` and ``Accept-Encoding`` (or none) are
what the upstream sees: the proxy's client (:mod:`.wire`) adds none of its own.

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

import time
from typing import TYPE_CHECKING

from werkzeug.http import parse_list_header

from ..errors import BackendUnavailable
from ..names import HOP_BY_HOP, IDENTITY_KEY, NOT_RETURNED, REQUEST_ID_KEY, URL_HEADERS
from ..signing import METADATA_HEADER, SIGNATURE_HEADER, identity_headers, sign
from ..typing import HeaderList, WSGIEnvironment
from .wire import header_lines

if TYPE_CHECKING:
    from ..identity import Identity
    from .urls import Upstream
    from .wire import Response

#: Request headers this proxy sets itself (``Host``: the upstream's; ``Expect``: the
#: gateway's server has already answered it; the body's framing: the proxy's own).
_NOT_FORWARDED = frozenset({"host", "expect", "content-length", "transfer-encoding"})


#: Environ key -> (header name, lower-case name) when the header may be forwarded, else
#: None (not a header, or one the proxy never forwards). Filled as keys are seen; header
#: names are the caller's to choose, so it stops growing at :data:`_KNOWN_MAX` entries.
_KNOWN: dict[str, tuple[str, str] | None] = {}
_KNOWN_MAX = 2048
_CONTENT_KEYS = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


def _forwardable(key: str) -> tuple[str, str] | None:
    """What :data:`_KNOWN` holds for ``key``, worked out."""
    if key.startswith("HTTP_") and key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
        name = key[5:].replace("_", "-").title()
    elif key in _CONTENT_KEYS:
        name = key.replace("_", "-").title()
    else:
        return None
    lower = name.lower()
    if lower in _NOT_FORWARDED or lower.startswith("envroute-") or lower in HOP_BY_HOP:
        return None
    return name, lower


#: The environ's keys, in order -> (key, header name, lower-case name) of those that may
#: be forwarded. A server builds every request's environ alike, and a client sends the
#: same headers each time, so the keys of most requests were seen before: the plan is
#: looked up, not worked out key by key. Cleared when :data:`_PLANS_MAX` full.
_PLANS: dict[tuple[str, ...], tuple[tuple[str, str, str], ...]] = {}
_PLANS_MAX = 256


def _plan(keys: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """What :data:`_PLANS` holds for ``keys``, worked out, and remembered."""
    known = _KNOWN
    plan = []
    for key in keys:
        try:
            found = known[key]
        except KeyError:
            found = _forwardable(key)
            if len(known) < _KNOWN_MAX:
                known[key] = found
        if found is not None:
            plan.append((key, *found))
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[keys] = result = tuple(plan)
    return result


def _connection_tokens(values: list[str]) -> frozenset[str]:
    """The header names a ``Connection`` header lists (they are hop-by-hop too)."""
    if len(values) == 1 and "," not in values[0] and '"' not in values[0]:
        token = values[0].strip().lower()  # the usual one token, as parsed below
        return frozenset((token,)) if token else frozenset()
    return frozenset(token.strip().lower() for value in values
                     for token in parse_list_header(value) if token.strip())


#: id(identity) -> (the identity, its header lines unsigned, its metadata JSON, the second
#: and the header lines with the signature last sent). The verifier's cache hands the same
#: frozen :class:`~envroute.identity.Identity` to every request of a key, so its headers
#: are serialised and checked once (:func:`.wire.header_lines`), and signed at most once a
#: second; the entry holds the identity, so its id cannot be reused while it is kept.
#: Cleared when :data:`_IDENTITIES_MAX` full.
_IDENTITIES: dict[int, tuple[Identity, str, str, int, str]] = {}
_IDENTITIES_MAX = 4096


def _identity_lines(identity: Identity, signing_secret: str) -> str:
    """:func:`envroute.signing.identity_headers` for ``identity`` as header lines, each
    checked and ending in CRLF, remembered; ``""`` when a value holds a character no
    header may (then :func:`identity_headers`' pairs go with the unchecked headers, and
    the request is refused as any such header is)."""
    entry = _IDENTITIES.get(id(identity))
    if entry is None or entry[0] is not identity:
        pairs = identity_headers(identity.key_id, identity.environment, identity.metadata,
                                 customer_id=identity.customer_id)
        lines = header_lines(pairs)
        if lines is None:
            return ""
        if len(_IDENTITIES) >= _IDENTITIES_MAX:
            _IDENTITIES.clear()
        entry = (identity, lines, dict(pairs)[METADATA_HEADER], 0, "")
        _IDENTITIES[id(identity)] = entry
    if not signing_secret:
        return entry[1]
    now = int(time.time())
    if entry[3] != now:  # a signature carries its second
        signature = sign(signing_secret, identity.key_id, identity.environment, entry[2],
                         customer_id=identity.customer_id, timestamp=now)
        entry = (identity, entry[1], entry[2], now,
                 f"{entry[1]}{SIGNATURE_HEADER}: {signature}\r\n")  # t=…,v2=hex: safe
        _IDENTITIES[id(identity)] = entry
    return entry[4]


def _append(existing: str | None, value: str) -> str:
    return f"{existing}, {value}" if existing else value


def request_headers(environ: WSGIEnvironment, *, signing_secret: str = "",
                    content_length: int | None = None) -> tuple[dict[str, str], str]:
    """End-to-end headers from the caller, then the forwarding headers; and the identity
    headers as checked lines (``name: value`` CRLF each, sent after the others)."""
    connection = environ.get("HTTP_CONNECTION")
    dropped = _connection_tokens([connection]) if connection else frozenset()
    keys = tuple(environ)
    plan = _PLANS.get(keys)
    if plan is None:
        plan = _plan(keys)
    headers: dict[str, str] = {}
    for key, name, lower in plan:
        value = environ[key]
        if (not value and key in _CONTENT_KEYS) or (dropped and lower in dropped):
            continue
        headers[name] = value
    if content_length is not None:
        headers["Content-Length"] = str(content_length)
    identity = environ.get(IDENTITY_KEY)
    checked = ""
    if identity is not None:
        checked = _identity_lines(identity, signing_secret)
        if not checked:  # a forbidden character: refused with the headers (a 502)
            headers.update(identity_headers(
                identity.key_id, identity.environment, identity.metadata, signing_secret,
                customer_id=identity.customer_id))
    request_id = environ.get(REQUEST_ID_KEY)
    if request_id:
        headers["Envroute-Request-Id"] = request_id
    remote = environ.get("REMOTE_ADDR", "") or "unknown"
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    if "X-Forwarded-For" in headers or "X-Forwarded-Proto" in headers or (
            "X-Forwarded-Host" in headers):  # the caller's own, appended to
        remote = _append(headers.get("X-Forwarded-For"), remote)
        scheme = _append(headers.get("X-Forwarded-Proto"), scheme)
        host = _append(headers.get("X-Forwarded-Host"), host) if host else ""
    headers["X-Forwarded-For"] = remote
    headers["X-Forwarded-Proto"] = scheme
    if host:
        headers["X-Forwarded-Host"] = host
    return headers, checked


def response_headers(raw: Response, upstream: Upstream, environ: WSGIEnvironment,
                     *, backend: str) -> HeaderList:
    """The headers to pass back to the caller; :class:`BackendUnavailable` (502) when the
    upstream's framing is ambiguous (see the module docstring).

    The usual response (no ``Connection`` but ``keep-alive``, no ``Transfer-Encoding``, at
    most one valid ``Content-Length``) whose headers all pass back as they are or are
    dropped goes back as the head reader sorted it in its one loop (``raw.passed``, see
    :mod:`.wirehead`); any other header by header here."""
    fields = raw.fields
    connection = fields.get("connection")
    lengths = fields.get("content-length")
    encodings = fields.get("transfer-encoding")
    if encodings is None and lengths is not None and len(lengths) == 1 and (
            lengths[0].isdigit() and lengths[0].isascii()):
        length: str | None = lengths[0]  # the usual one length
    elif lengths or encodings:
        length = _framing(lengths or [], encodings or [], backend)
    else:
        length = None
    passed = raw.passed
    if passed is not None and encodings is None and (
            lengths is None or (len(lengths) == 1 and length == lengths[0])) and (
            connection is None or connection == _KEEP_ALIVE_VALUE):
        return passed.copy()  # the caller's to extend
    dropped = (_NONE if connection is None else _KEEP_ALIVE if connection == _KEEP_ALIVE_VALUE
               else _connection_tokens(connection))
    headers: HeaderList = []
    returned = _RETURNED
    for pair in raw.headers:
        try:
            lower, kind = returned[pair[0]]
        except KeyError:
            lower, kind = _returned(pair[0])
        if lower in dropped:
            continue
        if kind is _PASS:
            headers.append(pair)
        elif kind is _LENGTH:
            if length is not None:
                headers.append((pair[0], length))
                length = None  # one Content-Length line, however many the upstream sent
        elif kind is _URL:
            rewritten = upstream.rewrite_header(lower, pair[1], environ)
            if rewritten is not None:
                headers.append((pair[0], rewritten))
    return headers


_NONE: frozenset[str] = frozenset()
_KEEP_ALIVE = frozenset({"keep-alive"})
_KEEP_ALIVE_VALUE = ["keep-alive"]
#: What happens to a response header, by its name: passed back, dropped, passed back as
#: the one framing length, or its URLs rewritten.
_PASS, _DROP, _LENGTH, _URL = "pass", "drop", "length", "url"
#: Response header name as received -> (lower-case name, what happens to it). Filled as
#: names are seen; stops growing at :data:`_RETURNED_MAX` entries.
_RETURNED: dict[str, tuple[str, str]] = {}
_RETURNED_MAX = 1024


def _returned(name: str) -> tuple[str, str]:
    """What :data:`_RETURNED` holds for ``name``, worked out."""
    lower = name.lower()
    if lower in NOT_RETURNED or lower in HOP_BY_HOP:
        kind = _DROP
    elif lower == "content-length":
        kind = _LENGTH
    elif lower in URL_HEADERS:
        kind = _URL
    else:
        kind = _PASS
    if len(_RETURNED) < _RETURNED_MAX:
        _RETURNED[name] = (lower, kind)
    return lower, kind


def _framing(lengths: list[str], encodings: list[str], backend: str) -> str | None:
    """The one ``Content-Length`` to pass on (None: none), or a 502 for ambiguity."""
    if encodings:
        codings = [c.strip().lower() for value in encodings for c in value.split(",")]
        if codings != ["chunked"]:
            raise BackendUnavailable(f"the response's Transfer-Encoding {codings!r} "
                                     "cannot be passed on safely", backend=backend,
                                     retryable=False)
        return None  # chunked wins; the caller's server frames the body itself
    if len(lengths) == 1 and lengths[0].isdigit() and lengths[0].isascii():
        return lengths[0]  # the usual one value
    values = {v.strip() for value in lengths for v in value.split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit() or not next(
            iter(values)).isascii():
        raise BackendUnavailable("the response's Content-Length values disagree",
                                 backend=backend, retryable=False)
    return values.pop()
