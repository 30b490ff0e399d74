"""HTTP/1.1 on one kept-alive upstream connection: the request out, the response in.

The proxy's own lean client, in place of ``http.client``'s per-request machinery (an
``email`` parser for every response head, a header-by-header ``putheader``): the request
head is written in one ``sendall`` (with the first piece of the body when there is one),
the response head is read by :mod:`.wirehead`, and the body here, by its framing. The
connection itself (the socket, TLS, certificate checks) is urllib3's, made by the pool
requests' adapter built (see :mod:`.pool`).

What is read is strict where a mistake would let bytes be misread: a head the proxy
cannot trust (see :mod:`.wirehead`), a bad chunk size, a line past :data:`MAX_LINE` or
more than :data:`~.wirehead.MAX_HEADERS` trailer lines is a :class:`ProtocolError` (the
proxy answers ``502``). The body's framing follows RFC 9112 §6.3: none for ``HEAD``,
``1xx``, ``204`` and ``304``; chunked when the last transfer coding is ``chunked`` (a
``Content-Length`` beside it is ignored and the connection is not reused); else one valid
``Content-Length``; else to the end of the connection. A connection goes back to the pool
only once its response was read to the end with nothing left over, and never after the
upstream said ``Connection: close`` (or, in HTTP/1.0, did not say ``keep-alive``).
"""

from __future__ import annotations

import contextlib
import http.client
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .wirehead import MAX_HEADERS, RECV_SIZE, ProtocolError, read_head

#: Longest chunk-size or trailer line accepted (http.client's limit for a line).
MAX_LINE = 65536
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_NO_BODY_STATUSES = frozenset({204, 304})


class Link:
    """One upstream connection and the bytes received on it but not yet consumed.

    ``conn`` is urllib3's connection object (it owns the socket and closes it);
    ``quiet`` is the pool's check, made for this socket, that an idle connection is
    still open with nothing unread. ``timeout``: set when the socket is blocking with its
    reads and writes bounded by the kernel (see :mod:`.pool`), the Python timeout a
    request body is sent under; None when the socket keeps its own Python timeout.
    """

    __slots__ = ("buffer", "conn", "quiet", "sock", "timeout")

    def __init__(self, conn: Any, sock: Any, quiet: Callable[[], bool] | None = None,
                 timeout: float | None = None) -> None:
        self.conn = conn
        self.sock = sock
        self.quiet = quiet
        self.timeout = timeout
        self.buffer = b""

    def close(self) -> None:
        self.buffer = b""
        with contextlib.suppress(OSError):  # closing a broken socket
            self.conn.close()

    # -- reading ------------------------------------------------------------------------

    def line(self) -> bytes:
        """One line, with its ``\\n`` (b"": the connection closed first)."""
        buffer = self.buffer
        end = buffer.find(b"\n")
        while end < 0:
            if len(buffer) > MAX_LINE:
                raise ProtocolError("a line of the response is too long")
            data = self.sock.recv(RECV_SIZE)
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
                 chunked: bool = False, checked: str = "") -> bytes:
    """The request line and headers, encoded (``Transfer-Encoding: chunked`` added for a
    ``chunked`` body); ``ValueError`` for a CR, LF or NUL inside a name or value (never a
    second request smuggled in a header). ``checked``: more header lines, each already
    checked (:func:`header_lines`), sent after ``headers``."""
    lines = _CRLF.join(map(_COLON_SPACE.join, headers.items()))  # "name: value", joined
    text = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{lines}{_CRLF if headers else ''}"
    count = len(headers) + 2
    if (text.count("\n") != count or text.count("\r") != count or "\0" in text
            or " " in method or " " in target):
        raise ValueError("a request header or the request line holds a forbidden character")
    return f"{text}{checked}{_CHUNKED if chunked else ''}\r\n".encode("latin-1")


def header_lines(pairs: list[tuple[str, str]]) -> str | None:
    """``name: value`` lines, each ending in CRLF, for :func:`request_head`'s ``checked``;
    None when a name or value holds a CR, LF or NUL."""
    text = "".join([f"{name}: {value}\r\n" for name, value in pairs])
    if text.count("\n") != len(pairs) or text.count("\r") != len(pairs) or "\0" in text:
        return None
    return text


_CRLF, _COLON_SPACE, _CHUNKED = "\r\n", ": ", "Transfer-Encoding: chunked\r\n"


def send(link: Link, head: bytes, body: Iterable[bytes] | None, *, chunked: bool) -> bool:
    """Write the request; False when the upstream stopped taking the body (it may have
    answered early, so the response is read all the same; the connection is not reused).

    The body is pulled piece by piece; the first piece goes with the head. A body goes
    under Python's socket timeout, which bounds each whole ``sendall`` (on a socket whose
    calls the kernel bounds, only while the body is sent)."""
    sock = link.sock
    if body is None:
        sock.sendall(head)
        return True
    timeout = link.timeout
    if timeout is not None:
        sock.settimeout(timeout)
    pieces = iter(body)
    first = next(pieces, None)
    try:
        if first is None:
            sock.sendall(head + b"0\r\n\r\n" if chunked else head)
        else:
            sock.sendall(head + (_chunk(first) if chunked else first))
            for piece in pieces:
                if piece:
                    sock.sendall(_chunk(piece) if chunked else piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        return False  # as urllib3 does: the upstream's early answer is still read
    if timeout is not None:
        sock.settimeout(None)  # the kernel's bounds again, for the response
    return True


def _chunk(piece: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(piece), piece)


class Response:
    """The upstream's status, headers and body, read as the caller asks for it.

    ``headers`` are (name, value) pairs in the order received; ``fields`` holds the values
    of ``Connection``, ``Content-Length`` and ``Transfer-Encoding`` by lower-case name;
    ``passed``, the headers the proxy passes back as they are, when the head reader
    could sort them (see :func:`.wirehead._usual_head`), else None.
    When the body was read to its end, ``done`` (the connection already went back to the
    pool through ``release``, or was closed); :meth:`close` before that closes it.
    """

    __slots__ = ("_chunked", "_crlf", "_keep", "_left", "_link", "_release", "done",
                 "fields", "headers", "passed", "reason", "status")

    def __init__(self, link: Link, method: str, release: Callable[[Link], None]) -> None:
        self._link = link
        self._release = release
        self.done = False
        self._crlf = False
        status, reason, headers, fields, keep, self.passed = read_head(link)
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
        while piece := self.read1(RECV_SIZE):
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
