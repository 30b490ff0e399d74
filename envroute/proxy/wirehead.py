"""The upstream's response head, read from one connection: status, headers, framing fields.

The half of the proxy's HTTP/1.1 client (:mod:`.wire`) that reads what comes before the
body. Strict where a mistake would let bytes be misread: a status line that is not
``HTTP/1.x NNN``, a header line without a name and ``:``, whitespace before the ``:``, a
bare CR, a folded framing header, a head past :data:`MAX_HEAD` or more than
:data:`MAX_HEADERS` header lines is a :class:`ProtocolError` (the proxy answers ``502``).
Interim ``1xx`` responses are skipped; ``101`` is refused. Obsolete line folding is read
as one space. Whether the connection may be kept follows RFC 9112 §9.3: not after
``Connection: close``, nor in HTTP/1.0 without ``keep-alive``.

Two readers, one answer: the usual head (``HTTP/1.1``, a final status, ``name:value``
lines ending in CRLF, all in the first ``recv``) is split at once by :func:`_usual_head`,
with the status and header lines an upstream repeats looked up rather than read again;
any other head is read line by line by :func:`_read_any_head`, the one that refuses what
cannot be read. The tests hold the two to the same answers.
"""

from __future__ import annotations

import http.client
import re
from typing import TYPE_CHECKING

from ..names import HOP_BY_HOP, NOT_RETURNED, URL_HEADERS

if TYPE_CHECKING:
    from .wire import Link

#: Longest response head accepted (status line and headers).
MAX_HEAD = 256 * 1024
#: Most header lines in a response head (http.client's limit).
MAX_HEADERS = 100
#: Bytes asked of the socket at a time while reading a response.
RECV_SIZE = 65536
#: The end of a head: an empty line (CRLF or a bare LF, which RFC 9112 §2.2 lets a
#: recipient accept).
_HEAD_END = re.compile(rb"\n\r?\n")


class ProtocolError(http.client.HTTPException):
    """The upstream's answer cannot be read as HTTP/1.1 (the proxy answers ``502``)."""


#: status, reason, headers, framing fields, whether the connection may be kept, and the
#: headers the proxy passes back as they are (None: see :func:`_usual_head`).
_Head = tuple[int, str, list[tuple[str, str]], dict[str, list[str]], bool,
              list[tuple[str, str]] | None]


def read_head(link: Link) -> _Head:
    """status, reason, headers, framing fields, whether the connection may be kept, and
    the headers passed back as they are (:func:`_usual_head`; None: sort them yourself).

    The usual head (``HTTP/1.1``, a final status, ``name:value`` lines ending in CRLF,
    all in the first ``recv``) is read by :func:`_usual_head`; any other line by line by
    :func:`_read_any_head`, the one that refuses what cannot be read."""
    buffer = link.buffer
    if not buffer:
        buffer = link.sock.recv(RECV_SIZE)
        if not buffer:
            raise http.client.RemoteDisconnected("connection closed without a response")
        link.buffer = buffer
    end = buffer.find(b"\r\n\r\n")
    if 0 <= end <= MAX_HEAD - 4:
        usual = _usual_head(buffer[:end].decode("latin-1"))
        if usual is not None:
            link.buffer = buffer[end + 4:]
            return usual
    return _read_any_head(link)


def _usual_head(text: str) -> _Head | None:
    """:func:`_read_any_head`'s answer for ``text`` (a head up to its first CRLF CRLF)
    when it has the usual form, else None (then read it line by line).

    The usual form: no CR or LF in any line (so the first empty line, the one
    :func:`_head` cuts at, is the end), ``HTTP/1.1`` and a status of 200 or more,
    every header line a name (a token) and ``:``. An upstream sends the same lines again
    and again (``Server: gunicorn``, ``Connection: keep-alive``…): lines read before are
    looked up, not read again (:data:`_LINES`, :data:`_STATUS_LINES`).

    The same loop sorts the headers for the way back (the proxy's one loop over them):
    those it passes back as they are (``Content-Length`` among them) are collected, those
    it never passes back (hop-by-hop, and :data:`~envroute.names.NOT_RETURNED`) are
    left out; with a header whose URLs may need rewriting
    (:data:`~envroute.names.URL_HEADERS`) there is no such list (None), and the caller
    sorts ``headers`` itself, as it does when ``Connection`` names other headers or the
    framing is not the usual one."""
    lines = text.split("\r\n")
    if len(lines) > MAX_HEADERS + 1:
        return None
    status = _STATUS_LINES.get(lines[0]) or _usual_status(lines[0])
    if status is None:
        return None
    known = _LINES
    headers: list[tuple[str, str]] = []
    passed: list[tuple[str, str]] | None = []
    fields: dict[str, list[str]] = {}
    for index in range(1, len(lines)):
        line = lines[index]
        try:
            pair, role = known[line]
        except KeyError:
            read = _line(line)
            if read is None:
                return None
            pair, role = read
        headers.append(pair)
        if role is _PASS:
            if passed is not None:
                passed.append(pair)
        elif role is _URL:
            passed = None
        elif role is not _DROP:  # a framing field
            if role in fields:
                fields[role].append(pair[1])
            else:
                fields[role] = [pair[1]]
            if role is _LENGTH and passed is not None:
                passed.append(pair)
    connection = fields.get("connection")
    keep = connection is None or connection == _KEEP_ALIVE or _keep(fields, True)
    return status[0], status[1], headers, fields, keep, passed


def _usual_status(line: str) -> tuple[int, str] | None:
    """``HTTP/1.1 NNN reason`` with NNN from 200, no CR or LF: (NNN, reason), remembered."""
    code = line[9:12]
    if (line[:9] != "HTTP/1.1 " or len(code) != 3 or not code.isdigit()
            or not code.isascii() or code[0] < "2" or line[12:13] not in ("", " ")
            or "\r" in line or "\n" in line):
        return None
    status = int(code), line[13:].strip()
    if len(_STATUS_LINES) < _REMEMBERED_MAX:
        _STATUS_LINES[line] = status
    return status


def _line(line: str) -> tuple[tuple[str, str], str] | None:
    """A header line without CR or LF, ``name:value`` with a valid name: ((name, value
    stripped of spaces and tabs), its role: a framing field's name, or :data:`_PASS`,
    :data:`_DROP` or :data:`_URL`), remembered when short; else None."""
    name, colon, value = line.partition(":")
    if not colon or "\r" in line or "\n" in line:
        return None
    role = _NAMES.get(name)
    if role is None:
        if _TOKEN.fullmatch(name) is None:
            return None
        role = _role(name.lower())
        if len(_NAMES) < _REMEMBERED_MAX:
            _NAMES[name] = role
    read = (name, value.strip(" \t")), role
    if len(line) <= _LINE_REMEMBERED:
        if len(_LINES) >= _REMEMBERED_MAX:
            _LINES.clear()  # values change (a date, a length): the lines of now are kept
        _LINES[line] = read
    return read


def _role(lower: str) -> str:
    """What a header named ``lower`` (lower-case) is to :func:`_usual_head`."""
    framing = _FRAMING_ROLES.get(lower)
    if framing is not None:
        return framing
    if lower in HOP_BY_HOP or lower in NOT_RETURNED:
        return _DROP
    return _URL if lower in URL_HEADERS else _PASS


def _read_any_head(link: Link) -> _Head:
    """:func:`read_head` for any head: line by line, 1xx responses skipped."""
    while True:
        lines = _head(link).split("\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if (version[:7] != "HTTP/1." or len(code) != 3 or not code.isdigit()
                or not code.isascii() or code[0] == "0"):
            raise ProtocolError("the upstream's status line is not HTTP/1.1")
        status = int(code)
        headers, fields = _headers(lines)
        if status >= 200:
            break
        if status == 101:
            raise ProtocolError("the upstream switched protocols")
        # an interim 1xx response (100 Continue, 103 Early Hints): the real one follows
    return (status, reason.strip(), headers, fields, _keep(fields, version == "HTTP/1.1"),
            None)


def _head(link: Link) -> str:
    """A response head up to its empty line, decoded (latin-1), its line ends made
    ``\\n``; a bare CR, a head past :data:`MAX_HEAD` or the connection closing before
    the end is a :class:`ProtocolError` (closed before any byte:
    :class:`http.client.RemoteDisconnected`)."""
    buffer = link.buffer
    found = _HEAD_END.search(buffer)
    while found is None:
        if len(buffer) > MAX_HEAD:
            raise ProtocolError("the response head is too long")
        data = link.sock.recv(RECV_SIZE)
        if not data:
            link.buffer = b""
            if buffer:
                raise ProtocolError("connection closed in the middle of the head")
            raise http.client.RemoteDisconnected("connection closed without a response")
        buffer += data
        found = _HEAD_END.search(buffer, max(0, len(buffer) - len(data) - 3))
    end = found.end()
    if end > MAX_HEAD:
        raise ProtocolError("the response head is too long")
    link.buffer = buffer[end:]
    text = buffer[:end].decode("latin-1").replace("\r\n", "\n")
    if "\r" in text:
        raise ProtocolError("a bare CR in the response head")
    return text


def _keep(fields: dict[str, list[str]], http11: bool) -> bool:
    """Whether the connection may be reused after this response (RFC 9112 §9.3)."""
    values = fields.get("connection")
    if values is None:
        return http11
    if len(values) == 1 and "," not in values[0]:  # the usual one token
        tokens = {values[0].strip().lower()}
    else:
        tokens = {t.strip().lower() for v in values for t in v.split(",")}
    return "close" not in tokens and (http11 or "keep-alive" in tokens)


def _headers(lines: list[str]) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    """The header lines of a head (``lines[0]`` is the status line, the last two are
    empty), as (name, value) pairs and the framing fields."""
    if len(lines) > MAX_HEADERS + 3:
        raise ProtocolError(f"more than {MAX_HEADERS} header lines")
    headers: list[tuple[str, str]] = []
    fields: dict[str, list[str]] = {}
    token = _TOKEN.fullmatch
    for index in range(1, len(lines) - 2):
        line = lines[index]
        if line[:1] in (" ", "\t"):  # obsolete line folding: part of the previous value
            if not headers:
                raise ProtocolError("the response head starts with a folded line")
            name, value = headers[-1]
            if name.lower() in _FRAMING:
                raise ProtocolError("a framing header of the response is folded")
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon or token(name) is None:
            raise ProtocolError("a header line of the response is malformed")
        value = value.strip(" \t")
        headers.append((name, value))
        lower = name.lower()
        if lower in _FRAMING:
            fields.setdefault(lower, []).append(value)
    return headers, fields


_FRAMING = frozenset({"connection", "content-length", "transfer-encoding"})
#: A header's role in :func:`_usual_head` (compared by identity): a framing field, named
#: by one of these very strings; passed back as it is; never passed back; or one whose
#: URLs may need rewriting.
_LENGTH = "content-length"
_FRAMING_ROLES = {"connection": "connection", "content-length": _LENGTH,
                  "transfer-encoding": "transfer-encoding"}
_PASS, _DROP, _URL = "", "drop", "url"
#: A header name (RFC 9110 §5.6.2 ``token``): no spaces, no separators.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Status lines (``HTTP/1.1 200 OK``) read before -> (status, reason); header names
#: checked before -> their role (:func:`_role`); header lines read before (up to
#: :data:`_LINE_REMEMBERED` characters) -> ((name, value), role). An upstream
#: uses a handful of status lines and names: those two stop growing at
#: :data:`_REMEMBERED_MAX` entries (then each new one is checked); the lines are cleared
#: when that full, since some values change with each response.
_STATUS_LINES: dict[str, tuple[int, str]] = {}
_NAMES: dict[str, str] = {}
_LINES: dict[str, tuple[tuple[str, str], str]] = {}
_REMEMBERED_MAX = 1024
_LINE_REMEMBERED = 200
#: ``Connection: keep-alive``, the usual value, as :func:`_usual_head` collects it.
_KEEP_ALIVE = ["keep-alive"]
