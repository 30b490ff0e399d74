"""A configurable upstream HTTP/1.1 server for the proxy's tests and benchmark.

Run as a process: ``python tests/proxy/upstream.py --port N --name primary``. Built on
``http.server`` rather than a WSGI server so that it sees the request target byte for
byte (``self.path``), controls its framing exactly and can misbehave on purpose.

A request asks for a behaviour with ``X-Upstream-Do: ACTION[:ARG][@NAME]`` (``@NAME``:
only the upstream started with ``--name NAME`` does it; the others echo):

=====================  ==============================================================
``echo`` (default)     200, JSON: name, method, target, headers, body length, sha256,
                       body (first 64 KiB, latin-1), client port
``status:CODE``        that status, with ``X-Status-Header: yes`` and, unless 204/304
                       or HEAD, the echo body
``stream:MIB[:chunked]``  MIB MiB of a fixed pattern, Content-Length or chunked
``gzip``               a gzip body sent with ``Content-Encoding: gzip``
``redirect:LOCATION``  302 with that ``Location``
``sleep:SECONDS``      wait, then echo
``die:BYTES``          promise 2*BYTES, send BYTES, close the connection
``diechunked``         one chunk of a chunked body, then close the connection
``reset``              read the request, then reset the connection without answering
``hop``                hop-by-hop and identifying response headers, then echo
``cookies``            two ``Set-Cookie`` headers, then echo
``headdie:close|reset``  a head promising 100 bytes, then close (or reset) before any
``framing:KIND``       rogue framing: ``cl-te`` (Content-Length 50 and chunked "hello"),
                       ``te-gzip`` (``Transfer-Encoding: gzip, chunked``), ``cl-two``
                       (two different Content-Length values)
``urls``               Content-Location, Link and Refresh naming this upstream, then echo
=====================  ==============================================================

``GET /__stats__``: ``{"requests", "ports", "log"}`` since start or the last
``POST /__reset__``. The benchmark's plain endpoint is ``GET /__fast__`` (a few bytes,
not counted).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATTERN = bytes(range(256)) * 256  # 64 KiB
GZIP_PLAIN = b"envroute passes Content-Encoding through untouched. " * 200
GZIP_BODY = gzip.compress(GZIP_PLAIN, mtime=0)
ECHO_BODY_LIMIT = 64 * 1024


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.ports: set[int] = set()
        self.log: list[list[str]] = []

    def record(self, method: str, target: str, port: int) -> None:
        with self.lock:
            self.requests += 1
            self.ports.add(port)
            self.log.append([method, target])

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.requests, "ports": sorted(self.ports), "log": self.log}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "UpstreamServer/1.0"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: stderr is a pipe
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self.handle_any
        raise AttributeError(name)

    def read_body(self) -> tuple[int, str, bytes]:
        digest = hashlib.sha256()
        kept = bytearray()
        total = 0

        def take(data: bytes) -> None:
            nonlocal total
            total += len(data)
            digest.update(data)
            if len(kept) < ECHO_BODY_LIMIT:
                kept.extend(data[: ECHO_BODY_LIMIT - len(kept)])

        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, 1 << 20))
                    if not data:
                        raise ConnectionError("body ended early")
                    take(data)
                    remaining -= len(data)
                self.rfile.readline()
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                data = self.rfile.read(min(remaining, 1 << 20))
                if not data:
                    raise ConnectionError("body ended early")
                take(data)
                remaining -= len(data)
        return total, digest.hexdigest(), bytes(kept)

    def handle_any(self) -> None:
        if self.path == "/__fast__":
            self.read_body()
            self.send(200, b"hello from upstream\n", [("Content-Type", "text/plain")])
            return
        if self.path == "/__stats__":
            self.send(200, json.dumps(self.server.stats.snapshot()).encode(),
                      [("Content-Type", "application/json")])
            return
        if self.path == "/__reset__":
            self.server.stats.reset()
            self.send(200, b"{}", [("Content-Type", "application/json")])
            return
        # the target as it came on the wire: http.server collapses a leading "//" in .path
        target = self.requestline.split(" ")[1]
        self.server.stats.record(self.command, target, self.client_address[1])
        action, _, arg = self.action()
        length, sha, body = self.read_body()
        echo = {"name": self.server.name, "method": self.command, "target": target,
                "headers": [[k, v] for k, v in self.headers.items()], "body_length": length,
                "body_sha256": sha, "body": body.decode("latin-1"),
                "client_port": self.client_address[1]}
        echo_bytes = json.dumps(echo).encode()
        json_type = [("Content-Type", "application/json")]
        if action == "status":
            code = int(arg)
            self.send(code, b"" if code in (204, 304) else echo_bytes,
                      [*json_type, ("X-Status-Header", "yes")])
        elif action == "stream":
            mib, _, mode = arg.partition(":")
            self.stream(int(float(mib) * (1 << 20)), chunked=mode == "chunked")
        elif action == "gzip":
            self.send(200, GZIP_BODY, [("Content-Type", "text/plain"),
                                       ("Content-Encoding", "gzip")])
        elif action == "redirect":
            self.send(302, b"", [("Location", arg)])
        elif action == "sleep":
            time.sleep(float(arg))
            self.send(200, echo_bytes, json_type)
        elif action == "die":
            self.die(int(arg))
        elif action == "diechunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(PATTERN), PATTERN))
            self.abort()
        elif action == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
        elif action == "hop":
            self.send(200, echo_bytes, [
                *json_type, ("Connection", "X-Private-Hop"), ("X-Private-Hop", "secret"),
                ("Keep-Alive", "timeout=5"), ("Proxy-Authenticate", "Basic"),
                ("Upgrade", "h2c"), ("X-Powered-By", "UpstreamFramework/9"),
                ("X-End-To-End", "kept")])
        elif action == "headdie":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.flush()
            if arg == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.close_connection = True
            else:
                self.abort()
        elif action == "framing":
            self.rogue_framing(arg)
        elif action == "urls":
            own = f"http://127.0.0.1:{self.server.server_address[1]}"
            self.send(200, echo_bytes, [
                *json_type, ("Content-Location", f"{own}/v1/things/1"),
                ("Link", f'<{own}/v1/things?page=2>; rel="next", '
                         '<https://docs.example/x>; rel="help"'),
                ("Refresh", f"5; url={own}/v1/done"), ("X-Other", own)])
        elif action == "cookies":
            self.send(200, echo_bytes, [*json_type, ("Set-Cookie", "a=1; Path=/"),
                                        ("Set-Cookie", "b=2; Path=/")])
        else:
            self.send(200, echo_bytes, json_type)

    def rogue_framing(self, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if kind == "cl-te":
            self.send_header("Content-Length", "50")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n0\r\n\r\n")
        elif kind == "te-gzip":
            self.send_header("Transfer-Encoding", "gzip, chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n0\r\n\r\n")
            self.abort()
        else:  # cl-two
            self.send_header("Content-Length", "5")
            self.send_header("Content-Length", "7")
            self.end_headers()
            self.wfile.write(b"hello")
            self.abort()

    def action(self) -> tuple[str, str, str]:
        value = self.headers.get("X-Upstream-Do", "echo")
        value, _, target = value.partition("@")
        if target and target != self.server.name:
            return "echo", "", ""
        return value.partition(":")

    def send(self, code: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        if code not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code not in (204, 304):
            self.wfile.write(body)

    def stream(self, size: int, *, chunked: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding" if chunked else "Content-Length",
                         "chunked" if chunked else str(size))
        self.end_headers()
        remaining = size
        while remaining:
            piece = PATTERN[: min(remaining, len(PATTERN))]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            remaining -= len(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def die(self, sent: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(sent * 2))
        self.end_headers()
        self.wfile.write(PATTERN[:sent])
        self.abort()

    def abort(self) -> None:
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int, name: str) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.name = name
        self.stats = Stats()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away is part of the tests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="upstream")
    args = parser.parse_args()
    with Server(args.port, args.name) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
