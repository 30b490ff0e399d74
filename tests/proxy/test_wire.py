"""The proxy's own HTTP/1.1 client (``envroute.proxy.wire``, ``.wirehead``) against a
scripted upstream.

Each test gives a tiny upstream the exact bytes to answer, one reply per request, and
looks at what the caller of :class:`ProxyBackend` gets and at what reached the upstream on
which connection: responses read by their framing, heads the proxy cannot trust refused
as ``502``, connections reused only when that is safe, and a request never sent on a
connection the upstream had closed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder

from envroute import Identity
from envroute.errors import BackendTimeout, BackendUnavailable
from envroute.proxy import ProxyBackend, wire, wirehead
from envroute.settings import BackendSettings

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Scripted:
    """Answers the n-th request with ``replies[n]``; ``b"<close>"`` after a reply closes
    the connection. Records (connection number, request head and body)."""

    replies: list[bytes]
    received: list[tuple[int, bytes]] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)
    listener: socket.socket = field(default_factory=socket.socket)
    proxies: list[ProxyBackend] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def serve(self) -> None:
        number = 0
        while self.replies:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            number += 1
            with conn:
                self.converse(conn, number)

    def converse(self, conn: socket.socket, number: int) -> None:
        buffer = b""
        while self.replies:
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffer) < length:
                buffer += conn.recv(65536)
            self.received.append((number, head + b"\r\n\r\n" + buffer[:length]))
            buffer = buffer[length:]
            reply = self.replies.pop(0)
            conn.sendall(reply.removesuffix(b"<close>"))
            if reply.endswith(b"<close>"):
                conn.close()
                self.closed.set()
                return


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    upstream = Scripted([])
    upstream.listener.bind(("127.0.0.1", 0))
    upstream.listener.listen(8)
    thread = threading.Thread(target=upstream.serve, daemon=True)
    started: list[threading.Thread] = []

    def start(*replies: bytes) -> Scripted:
        upstream.replies.extend(replies)
        thread.start()
        started.append(thread)
        return upstream

    upstream.start = start  # type: ignore[attr-defined]
    try:
        yield upstream
    finally:
        for proxy in upstream.proxies:
            proxy.close()
        with contextlib.suppress(OSError):  # wakes an accept() still waiting (Linux)
            upstream.listener.shutdown(socket.SHUT_RDWR)
        upstream.listener.close()
        if started:
            thread.join(5)


def call(proxy: ProxyBackend, method: str = "GET", body: bytes = b"",
         **headers: str) -> tuple[str, list[tuple[str, str]], bytes]:
    env = EnvironBuilder("/v1/x", method=method, data=body, headers=headers).get_environ()
    got: dict[str, Any] = {}

    def start_response(status: str, pairs: list[tuple[str, str]]) -> None:
        got.update(status=status, headers=pairs)

    result = proxy(env, start_response)  # type: ignore[arg-type]
    try:
        data = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return got["status"], got["headers"], data


def proxy_for(upstream: Scripted) -> ProxyBackend:
    proxy = ProxyBackend(BackendSettings(name="api", url=upstream.url, timeout=5))
    upstream.proxies.append(proxy)  # closed by the fixture
    return proxy


def test_interim_responses_are_skipped(scripted: Any) -> None:
    upstream = scripted.start(b"HTTP/1.1 100 Continue\r\n\r\n"
                              b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n" + OK)
    status, headers, body = call(proxy_for(upstream))
    assert (status, body) == ("200 OK", b"ok")
    assert "Link" not in dict(headers)


@pytest.mark.parametrize("reply", [
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Type text/plain\r\nContent-Length: 2\r\n\r\nok",
                 id="no-colon"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", id="space-before-colon"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX-A: a\rContent-Length: 2\r\n\r\nok", id="bare-cr"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n 5\r\n\r\nok",
                 id="folded-content-length"),
    pytest.param(b"ICY 200 OK\r\nContent-Length: 2\r\n\r\nok", id="not-http"),
    pytest.param(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", id="101"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
                 id="bad-chunk-size"),
    pytest.param(b"HTTP/1.1 200 OK\r\n" + b"X-A: a\r\n" * 101 + b"Content-Length: 2\r\n\r\nok",
                 id="too-many-headers"),
])
def test_a_response_that_is_not_valid_http_is_a_502(scripted: Any, reply: bytes) -> None:
    upstream = scripted.start(reply + b"<close>")
    with pytest.raises(BackendUnavailable):
        call(proxy_for(upstream))


def test_lenient_where_nothing_can_be_misread(scripted: Any) -> None:
    upstream = scripted.start(
        b"HTTP/1.1 200 OK\nX-Folded: one\r\n\t two\nContent-Length: 2\n\nok",
        b"HTTP/1.1 201 \r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
        b"2;ext=1\r\nhe\r\n3\r\nllo\r\n0\r\nX-T: t\r\n\r\n")
    proxy = proxy_for(upstream)
    status, headers, body = call(proxy)
    assert (status, dict(headers)["X-Folded"], body) == ("200 OK", "one two", b"ok")
    status, headers, body = call(proxy)
    assert (status, body) == ("201 Created", b"hello")  # the reason phrase filled in
    assert [number for number, _ in upstream.received] == [1, 1]  # one kept-alive connection


@pytest.mark.parametrize(("first", "reused"), [
    pytest.param(OK, True, id="keep-alive"),
    pytest.param(OK.replace(b"OK\r\n", b"OK\r\nConnection: close\r\n", 1), False,
                 id="connection-close"),
    pytest.param(OK.replace(b"HTTP/1.1", b"HTTP/1.0"), False, id="http-1.0"),
    pytest.param(OK.replace(b"HTTP/1.1", b"HTTP/1.0").replace(
        b"OK\r\n", b"OK\r\nConnection: keep-alive\r\n", 1), True, id="http-1.0-keep-alive"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"2\r\nok\r\n0\r\n\r\n", False, id="length-beside-chunked"),
])
def test_a_connection_is_reused_only_when_safe(scripted: Any, first: bytes,
                                               reused: bool) -> None:
    upstream = scripted.start(first if reused else first + b"<close>", OK)
    proxy = proxy_for(upstream)
    assert call(proxy)[2] == b"ok"
    assert call(proxy)[2] == b"ok"
    assert [number for number, _ in upstream.received] == [1, 1 if reused else 2]


@pytest.mark.parametrize("reply", [
    pytest.param(b"", id="nothing"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n", id="half-a-head"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n", id="a-head"),
])
def test_an_upstream_silent_before_the_body_starts_is_a_504(scripted: Any,
                                                               reply: bytes) -> None:
    upstream = scripted.start(reply, OK)  # OK never asked for: the connection stays open
    proxy = ProxyBackend(BackendSettings(name="api", url=upstream.url, timeout=0.3))
    upstream.proxies.append(proxy)
    with pytest.raises(BackendTimeout, match=r"sent nothing for 0\.3 s"):
        call(proxy)


def test_an_upstream_silent_mid_body_breaks_off_the_response(
        scripted: Any, caplog: pytest.LogCaptureFixture) -> None:
    upstream = scripted.start(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\nfirst", OK)
    proxy = ProxyBackend(BackendSettings(name="api", url=upstream.url, timeout=0.3))
    upstream.proxies.append(proxy)
    with caplog.at_level(logging.WARNING, logger="envroute"), \
            pytest.raises(BackendUnavailable, match=r"broke off \(timed out\)"):
        call(proxy)
    assert "after 5 bytes (timed out)" in caplog.text


def test_a_body_read_to_the_end_of_the_connection(scripted: Any) -> None:
    upstream = scripted.start(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                              + b"x" * 300_000 + b"<close>", OK)
    proxy = proxy_for(upstream)
    _, headers, body = call(proxy)
    assert body == b"x" * 300_000 and "Content-Length" not in dict(headers)
    assert call(proxy)[2] == b"ok"  # on a new connection
    assert [number for number, _ in upstream.received] == [1, 2]


def test_a_connection_the_upstream_closed_is_never_used(scripted: Any) -> None:
    # The upstream answers and closes without saying so; the next request, a POST, must
    # go on a new connection (on the dead one it would fail, or worse, be resent).
    upstream = scripted.start(OK + b"<close>", OK)
    proxy = proxy_for(upstream)
    assert call(proxy)[2] == b"ok"
    assert upstream.closed.wait(5)
    assert call(proxy, "POST", b"charge")[2] == b"ok"
    numbers = [number for number, _ in upstream.received]
    assert numbers == [1, 2]
    assert upstream.received[1][1].endswith(b"\r\n\r\ncharge")


def test_no_header_can_smuggle_a_second_request(scripted: Any) -> None:
    upstream = scripted.start(OK)
    proxy = proxy_for(upstream)
    env = EnvironBuilder("/v1/x").get_environ()
    env["HTTP_X_EVIL"] = "a\r\n\r\nGET /admin HTTP/1.1\r\nX-B: b"
    env["wsgi.input"] = io.BytesIO(b"")
    with pytest.raises(BackendUnavailable):
        proxy(env, lambda status, headers: None)
    assert call(proxy)[2] == b"ok"
    assert len(upstream.received) == 1 and b"/admin" not in upstream.received[0][1]


@pytest.mark.parametrize("signing_secret", ["", "s3cret"])
@pytest.mark.parametrize("identity", [
    pytest.param(Identity("key_1\r\n\r\nGET /admin HTTP/1.1", "sandbox"), id="key-id"),
    pytest.param(Identity("key_1", "sandbox\nGET /admin HTTP/1.1"), id="environment"),
    pytest.param(Identity("key_1", "sandbox", customer_id="c\r\nGET /admin"), id="customer"),
    pytest.param(Identity("key_1", "sandbox", customer_id="c\0GET /admin"), id="nul"),
])
def test_no_identity_value_can_smuggle_a_second_request(scripted: Any, identity: Identity,
                                                        signing_secret: str) -> None:
    upstream = scripted.start(OK)
    proxy = ProxyBackend(BackendSettings(name="api", url=upstream.url, timeout=5),
                         signing_secret=signing_secret)
    upstream.proxies.append(proxy)
    for _ in range(2):  # the second time with whatever the first remembered
        env = EnvironBuilder("/v1/x").get_environ()
        env["envroute.identity"] = identity
        with pytest.raises(BackendUnavailable):
            proxy(env, lambda status, headers: None)
    assert call(proxy)[2] == b"ok"
    assert len(upstream.received) == 1 and b"/admin" not in upstream.received[0][1]


class _Canned:
    """A socket whose every ``recv`` returns the next canned piece (then b"")."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)

    def recv(self, size: int) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


def _read(reader: Any, data: bytes) -> tuple[Any, bytes]:
    link = wire.Link(None, _Canned(data))
    try:
        return reader(link)[:5], link.buffer  # the 6th, the headers sorted: test_forwarding
    except Exception as exc:  # the same refusal either way
        return type(exc), b""


_H = b"HTTP/1.1 200 OK\r\n"


@pytest.mark.parametrize(("head", "usual"), [
    pytest.param(_H + b"Server: gunicorn\r\nDate: Sat, 28 Nov 2026 23:42:57 GMT\r\n"
                 b"Connection: keep-alive\r\nContent-Type: text/plain\r\n"
                 b"Content-Length: 5\r\n\r\n", True, id="gunicorn"),
    pytest.param(_H + b"X-A:b\r\nX-B:   c d \t\r\nX-C:\r\nX-D: \r\n\r\n", True, id="spaces"),
    pytest.param(_H + b"X-A: \x0bv\x0b\r\nX-E: caf\xe9\r\n\r\n", True, id="other-bytes"),
    pytest.param(_H + b"Location: http://h:80/a\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
                 True, id="colons-and-repeats"),
    pytest.param(_H + b"connection: Keep-Alive, close\r\nCONTENT-LENGTH: 5\r\n"
                 b"content-length: 5\r\n\r\n", True, id="framing-any-case"),
    pytest.param(_H + b"Transfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n", True,
                 id="te-and-cl"),
    pytest.param(b"HTTP/1.1 204\r\n\r\n", True, id="no-reason"),
    pytest.param(b"HTTP/1.1 404  Not  Found \r\n\r\n", True, id="reason-spaces"),
    pytest.param(b"HTTP/1.1 999 X\r\n\r\n", True, id="status-999"),
    pytest.param(_H + b"X-A: a\r\n" * 100 + b"\r\n", True, id="100-headers"),
    pytest.param(_H + b"X-A: a\r\n" * 101 + b"\r\n", False, id="101-headers"),
    pytest.param(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", False, id="http-1.0"),
    pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n" + _H + b"X-A: a\r\n\r\n", False, id="1xx"),
    pytest.param(b"HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\n", False, id="101"),
    pytest.param(_H + b"X-A: one\r\n\t two\r\n\r\n", False, id="folded"),
    pytest.param(_H + b"X-A: a\nX-B: b\r\n\r\n", False, id="bare-lf"),
    pytest.param(b"HTTP/1.1 200 OK\nX-A: a\n\nX-B: b\r\n\r\n", False, id="lf-head-end-first"),
    pytest.param(_H + b"X-A: a\rb\r\n\r\n", False, id="bare-cr"),
    pytest.param(_H + b"X A: a\r\n\r\n", False, id="space-in-name"),
    pytest.param(_H + b"X-A : a\r\n\r\n", False, id="space-before-colon"),
    pytest.param(_H + b"X-A\r\n\r\n", False, id="no-colon"),
    pytest.param(_H + b": a\r\n\r\n", False, id="no-name"),
    pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", False, id="four-digits"),
    pytest.param(b"HTTP/1.1 20 OK\r\n\r\n", False, id="two-digits"),
    pytest.param(b"HTTP/1.1 200\tOK\r\n\r\n", False, id="tab-after-status"),
    pytest.param(b"HTTP/1.1 \xb200 OK\r\n\r\n", False, id="not-ascii-digit"),
    pytest.param(b"HTTP/1.11 200 OK\r\n\r\n", False, id="version-1.11"),
    pytest.param(b"ICY 200 OK\r\n\r\n", False, id="not-http"),
])
def test_the_usual_head_reads_as_every_head_does(head: bytes, usual: bool) -> None:
    # read_head takes a shortcut for the usual head; what it answers (or refuses) must be
    # what the line-by-line reader answers, and the body must start at the same byte.
    data = head + b"body"
    for _ in range(2):  # the second time from the remembered names and status lines
        assert _read(wirehead.read_head, data) == _read(wirehead._read_any_head, data)
    end = data.find(b"\r\n\r\n")
    assert (wirehead._usual_head(data[:end].decode("latin-1")) is not None) is usual
