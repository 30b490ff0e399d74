"""``envroute.serving``: one line for a busy port before "serving on"; requests whose
framing is ambiguous refused before the gateway sees them (raw sockets)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.wsgi import get_input_stream

from envroute.errors import EnvrouteError
from envroute.serving import build_server, serve


def echo_body(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = get_input_stream(environ).read()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def server_port() -> Iterator[int]:
    server = build_server(echo_body, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.socket.getsockname()[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        received = b""
        while data := sock.recv(65536):
            received += data
        return received


def test_a_busy_port_is_one_line_before_serving_on() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        said: list[str] = []
        with pytest.raises(EnvrouteError) as info:
            serve(echo_body, "127.0.0.1", port, announce=said.append)
    message = str(info.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message
    assert said == []  # never claimed to be serving


SMUGGLING = [
    pytest.param(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", id="cl-and-te"),
    pytest.param(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", id="te-and-cl"),
    pytest.param(b"Transfer-Encoding: gzip, chunked\r\n", id="other-coding"),
    pytest.param(b"Content-Length: 5\r\nContent-Length: 6\r\n", id="two-lengths"),
]


@pytest.mark.parametrize("framing", SMUGGLING)
def test_ambiguous_request_framing_is_refused_and_the_connection_closed(
        server_port: int, framing: bytes) -> None:
    smuggled = b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = (b"POST / HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n"
           b"0\r\n\r\n" + smuggled)
    answer = exchange(server_port, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["code"] == "invalid_request"
    assert answer.count(b"HTTP/1.1 ") == 1  # the smuggled request was never served


@pytest.mark.parametrize(("framing", "body"), [
    pytest.param(b"Content-Length: 5\r\n", b"hello", id="content-length"),
    pytest.param(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n", id="chunked"),
])
def test_plain_framing_is_served(server_port: int, framing: bytes, body: bytes) -> None:
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + framing + b"\r\n" + body
    answer = exchange(server_port, raw)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nhello")
