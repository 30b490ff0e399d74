"""HTTP/1.1 on one kept-alive upstream connection: the request out, the response in.

The proxy's own lean client, in place of ``http.client``'s per-request machinery (an
``email`` parser for every response head, a header-by-header ``putheader``): the request
head is written in one ``sendall`` (with the first piece of the body when there is one),
and the response head is split by this module. The connection itself (the socket, TLS,
certificate checks) is urllib3's, made by the pool requests' adapter built (see
:mod:`.pool`).

What is read is strict where a mistake would let bytes be misread: a status line that is
not ``HTTP/1.x NNN``, a header line without a name and ``:``, whitespace before the
``:``, a bad chunk size or more than :data:`MAX_HEADERS` header lines is a
:class:`ProtocolError` (the proxy answers ``502``). The body's framing follows RFC 9112
§6.3: none for ``HEAD``, ``1xx``, ``204`` and ``304``; chunked when the last transfer
coding is ``chunked`` (a ``Content-Length`` beside it is ignored and the connection is
not reused); else one valid ``Content-Length``; else to the end of the connection. A
connection goes back to the pool only once its response was read to the end with
nothing left over, and never after the upstream said ``Connection: close`` (or, in
HTTP/1.0, did not say ``keep-alive``). Obsolete line folding is read as one space.
"""

from __future__ import annotations

import contextlib
import http.client
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: Longest chunk-size or trailer line accepted (http.client's limit for a line).
MAX_LINE = 65536
#: Longest response head accepted (status line and headers).
MAX_HEAD = 256 * 1024
#: Most header lines in a response head (http.client's limit).
MAX_HEADERS = 100
#: Bytes asked of the socket at a time while reading a response head.
_RECV_SIZE = 65536
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
#: The end of a head: an empty line (CRLF or a bare LF, which RFC 9112 §2.2 lets a
#: recipient accept).
_HEAD_END = re.compile(rb"\n\r?\n")
_NO_BODY_STATUSES = frozenset({204, 304})


class ProtocolError(http.client.HTTPException):
    """The upstream's answer cannot be read as HTTP/1.1 (the proxy answers ``502``)."""


class Link:
    """One upstream connection and the bytes received on it but not yet consumed.

    ``conn`` is urllib3's connection object (it owns the socket and closes it);
    ``quiet`` is the pool's check, made for this socket, that an idle connection is
    still open with nothing unread.
    """

    __slots__ = ("buffer", "conn", "quiet", "sock")

    def __init__(self, conn: Any, sock: Any, quiet: Callable[[], bool] | None = None) -> None:
        self.conn = conn
        self.sock = sock
        self.quiet = quiet
        self.buffer = b""

    def close(self) -> None:
        self.buffer = b""
        with contextlib.suppress(OSError):  # closing a broken socket
            self.conn.close()

    # -- reading ------------------------------------------------------------------------

    def head(self) -> str:
        """A response head up to its empty line, decoded (latin-1), its line ends made
        ``\\n``; a bare CR, a head past :data:`MAX_HEAD` or the connection closing before
        the end is a :class:`ProtocolError` (closed before any byte:
        :class:`http.client.RemoteDisconnected`)."""
        buffer = self.buffer
        found = _HEAD_END.search(buffer)
        while found is None:
            if len(buffer) > MAX_HEAD:
                raise ProtocolError("the response head is too long")
            data = self.sock.recv(_RECV_SIZE)
            if not data:
                self.buffer = b""
                if buffer:
                    raise ProtocolError("connection closed in the middle of the head")
                raise http.client.RemoteDisconnected("connection closed without a response")
            buffer += data
            found = _HEAD_END.search(buffer, max(0, len(buffer) - len(data) - 3))
        end = found.end()
        if end > MAX_HEAD:
            raise ProtocolError("the response head is too long")
        self.buffer = buffer[end:]
        text = buffer[:end].decode("latin-1").replace("\r\n", "\n")
        if "\r" in text:
            raise ProtocolError("a bare CR in the response head")
        return text

    def line(self) -> bytes:
        """One line, with its ``\\n`` (b"": the connection closed first)."""
        buffer = self.buffer
        end = buffer.find(b"\n")
        while end < 0:
            if len(buffer) > MAX_LINE:
                raise ProtocolError("a line of the response is too long")
            data = self.sock.recv(_RECV_SIZE)
            if not data:
                self.buffer = b""
                return buffer
            start = len(buffer)
            buffer += data
            end = buffer.find(b"\n", start)
        if end >= MAX_LINE:
            raise ProtocolError("a line of the response is too long")
        self.buffer = buffer[end + 1:]
        return buffer[:end + 1]

    def read1(self, size: int) -> bytes:
        """At most ``size`` bytes: what was buffered, else one ``recv`` (b"": closed)."""
        buffer = self.buffer
        if buffer:
            if len(buffer) <= size:
                self.buffer = b""
                return buffer
            self.buffer = buffer[size:]
            return buffer[:size]
        data: bytes = self.sock.recv(size)
        return data


def request_head(method: str, target: str, host: str, headers: Mapping[str, str], *,
                 chunked: bool = False) -> bytes:
    """The request line and headers, encoded (``Transfer-Encoding: chunked`` added for a
    ``chunked`` body); ``ValueError`` for a CR, LF or NUL inside a name or value (never a
    second request smuggled in a header)."""
    lines = _CRLF.join(map(_COLON_SPACE.join, headers.items()))  # "name: value", joined
    text = (f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{lines}"
            f"{_CRLF if headers else ''}{_CHUNKED if chunked else ''}\r\n")
    count = len(headers) + 3 + chunked
    if (text.count("\n") != count or text.count("\r") != count or "\0" in text
            or " " in method or " " in target):
        raise ValueError("a request header or the request line holds a forbidden character")
    return text.encode("latin-1")


_CRLF, _COLON_SPACE, _CHUNKED = "\r\n", ": ", "Transfer-Encoding: chunked\r\n"


def send(link: Link, head: bytes, body: Iterable[bytes] | None, *, chunked: bool) -> bool:
    """Write the request; False when the upstream stopped taking the body (it may have
    answered early, so the response is read all the same; the connection is not reused).

    The body is pulled piece by piece; the first piece goes with the head."""
    sock = link.sock
    if body is None:
        sock.sendall(head)
        return True
    pieces = iter(body)
    first = next(pieces, None)
    try:
        if first is None:
            sock.sendall(head + b"0\r\n\r\n" if chunked else head)
            return True
        sock.sendall(head + (_chunk(first) if chunked else first))
        for piece in pieces:
            if piece:
                sock.sendall(_chunk(piece) if chunked else piece)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        return False  # as urllib3 does: the upstream's early answer is still read
    return True


def _chunk(piece: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(piece), piece)


class Response:
    """The upstream's status, headers and body, read as the caller asks for it.

    ``headers`` are (name, value) pairs in the order received; ``fields`` holds the values
    of ``Connection``, ``Content-Length`` and ``Transfer-Encoding`` by lower-case name.
    When the body was read to its end, ``done`` (the connection already went back to the
    pool through ``release``, or was closed); :meth:`close` before that closes it.
    """

    __slots__ = ("_chunked", "_crlf", "_keep", "_left", "_link", "_release", "done",
                 "fields", "headers", "reason", "status")

    def __init__(self, link: Link, method: str, release: Callable[[Link], None]) -> None:
        self._link = link
        self._release = release
        self.done = False
        self._crlf = False
        status, reason, headers, fields, keep = _read_head(link)
        self.status, self.reason, self.headers, self.fields = status, reason, headers, fields
        self._chunked = False
        self._left: int | None = 0
        if method == "HEAD" or status in _NO_BODY_STATUSES:
            pass
        elif "transfer-encoding" in fields:
            codings = ",".join(fields["transfer-encoding"]).split(",")
            if codings[-1].strip().lower() == "chunked":
                self._chunked = True
                if "content-length" in fields:
                    keep = False  # RFC 9112 §6.3: the length was wrong; do not reuse
            else:
                self._left, keep = None, False  # read to the end (the proxy refuses it)
        elif "content-length" in fields:
            lengths = fields["content-length"]
            if len(lengths) == 1 and "," not in lengths[0]:  # the usual one value
                length = lengths[0]
            else:
                values = {v.strip() for value in lengths for v in value.split(",")}
                length = values.pop() if len(values) == 1 else ""
            if length.isdigit() and length.isascii():
                self._left = int(length)
            else:
                self._left, keep = None, False
        else:
            self._left, keep = None, False
        self._keep = keep
        if self._left == 0 and not self._chunked:
            self._end()

    def read1(self, size: int) -> bytes:
        """The next piece of the body, at most ``size`` bytes, as soon as it arrives;
        b"" at its end (the connection is then released). Raises if the body breaks off."""
        if self.done:
            return b""
        link = self._link
        if self._chunked and self._left == 0 and not self._next_chunk():
            return b""
        left = self._left
        if left is None:  # to the end of the connection
            data = link.read1(size)
            if not data:
                self._end()
            return data
        data = link.read1(min(size, left))
        if not data:
            raise http.client.IncompleteRead(b"", left)
        self._left = left = left - len(data)
        if left == 0 and not self._chunked:
            self._end()
        return data

    def read(self) -> bytes:
        """The rest of the body at once (for bodies known to be empty or small)."""
        pieces = []
        while piece := self.read1(_RECV_SIZE):
            pieces.append(piece)
        return b"".join(pieces)

    def close(self) -> None:
        """Done with the response: a connection not read to the end is closed."""
        if not self.done:
            self.done = True
            self._link.close()

    def _next_chunk(self) -> bool:
        """Read up to the next chunk's data; False at the last chunk (body done)."""
        link = self._link
        if self._crlf and link.line() not in (b"\r\n", b"\n"):
            raise ProtocolError("invalid chunked encoding")
        size_line = link.line()
        if not size_line:
            raise http.client.IncompleteRead(b"")
        digits = size_line.split(b";", 1)[0].strip()
        if not _HEX.fullmatch(digits):
            raise ProtocolError("invalid chunked encoding")
        self._left = int(digits, 16)
        self._crlf = True
        if self._left == 0:
            self._trailers()
            return False
        return True

    def _trailers(self) -> None:
        for _ in range(MAX_HEADERS + 1):
            line = self._link.line()
            if line in (b"\r\n", b"\n"):
                self._end()
                return
            if not line:
                raise http.client.IncompleteRead(b"")
        raise ProtocolError("too many trailer lines")

    def _end(self) -> None:
        self.done = True
        link = self._link
        if self._keep and not link.buffer:
            self._release(link)
        else:
            link.close()


_Head = tuple[int, str, list[tuple[str, str]], dict[str, list[str]], bool]


def _read_head(link: Link) -> _Head:
    """status, reason, headers, framing fields, whether the connection may be kept.

    The usual head (``HTTP/1.1``, a final status, ``name:value`` lines ending in CRLF,
    all in the first ``recv``) is read by :func:`_usual_head`; any other line by line by
    :func:`_read_any_head`, the one that refuses what cannot be read."""
    buffer = link.buffer
    if not buffer:
        buffer = link.sock.recv(_RECV_SIZE)
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
    :meth:`Link.head` cuts at, is the end), ``HTTP/1.1`` and a status of 200 or more,
    every header line a name (a token) and ``:``. An upstream sends the same lines again
    and again (``Server: gunicorn``, ``Connection: keep-alive``…): lines read before are
    looked up, not read again (:data:`_LINES`, :data:`_STATUS_LINES`)."""
    lines = text.split("\r\n")
    if len(lines) > MAX_HEADERS + 1:
        return None
    status = _STATUS_LINES.get(lines[0]) or _usual_status(lines[0])
    if status is None:
        return None
    known = _LINES
    headers: list[tuple[str, str]] = []
    fields: dict[str, list[str]] = {}
    for index in range(1, len(lines)):
        line = lines[index]
        try:
            pair, framing = known[line]
        except KeyError:
            read = _line(line)
            if read is None:
                return None
            pair, framing = read
        headers.append(pair)
        if framing:
            if framing in fields:
                fields[framing].append(pair[1])
            else:
                fields[framing] = [pair[1]]
    connection = fields.get("connection")
    keep = connection is None or connection == _KEEP_ALIVE or _keep(fields, True)
    return status[0], status[1], headers, fields, keep


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
    stripped of spaces and tabs), its framing field or ``""``), remembered when short;
    else None."""
    name, colon, value = line.partition(":")
    if not colon or "\r" in line or "\n" in line:
        return None
    framing = _NAMES.get(name)
    if framing is None:
        if _TOKEN.fullmatch(name) is None:
            return None
        lower = name.lower()
        framing = lower if lower in _FRAMING else ""
        if len(_NAMES) < _REMEMBERED_MAX:
            _NAMES[name] = framing
    read = (name, value.strip(" \t")), framing
    if len(line) <= _LINE_REMEMBERED:
        if len(_LINES) >= _REMEMBERED_MAX:
            _LINES.clear()  # values change (a date, a length): the lines of now are kept
        _LINES[line] = read
    return read


def _read_any_head(link: Link) -> _Head:
    """:func:`_read_head` for any head: line by line, 1xx responses skipped."""
    while True:
        lines = link.head().split("\n")
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
    return status, reason.strip(), headers, fields, _keep(fields, version == "HTTP/1.1")


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
#: A header name (RFC 9110 §5.6.2 ``token``): no spaces, no separators.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Status lines (``HTTP/1.1 200 OK``) read before -> (status, reason); header names
#: checked before -> their framing field or ``""``; header lines read before (up to
#: :data:`_LINE_REMEMBERED` characters) -> ((name, value), framing field). An upstream
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
