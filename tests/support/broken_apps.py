"""In-process backends that break the WSGI protocol in each way a real app can.

The gateway must answer each with ``502 backend_unavailable`` (a problem) while nothing
of the body reached the caller, or close the connection once bytes were sent: never a 500,
never a traceback (PEP 3333's error path; issue 9 "No 500, ever").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

StartResponse = Callable[..., Any]


def invalid_header(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Bad", "a\r\nInjected: 1")])
    return [b"never sent"]


def invalid_header_name(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Bad Name", "x")])
    return [b"never sent"]


def invalid_status(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("OK", [("Content-Type", "text/plain")])
    return [b"never sent"]


def fails_after_start(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    raise RuntimeError("the database password is hunter2")


def lazy_raises(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    raise RuntimeError("failed before the first byte")
    yield b"never"  # pragma: no cover - makes this a generator


def lazy_empty_then_raises(environ: dict[str, Any],
                           start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b""
    raise RuntimeError("failed after an empty chunk")


def never_starts(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    return [b"a body without a status"]


def breaks_midstream(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
    yield b"the first part"
    raise RuntimeError("failed after bytes were sent")


def legacy_write(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    return [b"then returned"]


def str_body(environ: dict[str, Any], start_response: StartResponse) -> list[Any]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["text, not bytes"]


def lazy_str_body(environ: dict[str, Any], start_response: StartResponse) -> Iterator[Any]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield "text, not bytes"


#: name -> app, for configs (``app = "tests.support.broken_apps:NAME"``)
BEFORE_BODY = ["invalid_header", "invalid_header_name", "invalid_status", "fails_after_start",
               "lazy_raises", "lazy_empty_then_raises", "never_starts", "str_body",
               "lazy_str_body"]
