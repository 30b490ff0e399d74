"""Fixtures for the Flask and Django integration tests (and the examples).

Django is configured only by ``djangoapp/conftest.py``, when that folder is collected, so
the rest of the suite (``pytest tests/core``) never imports Django.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server

from tests.conftest import SECRET, text_app

__all__ = ["SECRET", "Upstream", "bearer", "problem_of", "text_app"]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def problem_of(body: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(body)
    assert set(data) >= {"type", "title", "status", "detail", "code", "request_id"}
    return data


class Upstream:
    """A real HTTP server on a free loopback port, answering with ``app``."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Upstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """An upstream that reports what it received: path and the envroute headers."""
    body = json.dumps({
        "path": environ.get("PATH_INFO"),
        "key_id": environ.get("HTTP_ENVROUTE_KEY_ID"),
        "environment": environ.get("HTTP_ENVROUTE_ENVIRONMENT"),
        "authorization": environ.get("HTTP_AUTHORIZATION"),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("X-Upstream", "yes"), ("Set-Cookie", "seen=1; Path=/")])
    return [body]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream(echo_app) as server:
        yield server


#: What a backend sends that a naive conversion loses: repeated header lines, cookies
#: Django's cookie jar cannot hold (Partitioned; two of one name with different paths),
#: an unusual status line and body bytes that are not text.
EXACT_STATUS = "201 Made It"
EXACT_HEADERS = [
    ("Content-Type", "application/octet-stream"),
    ("Link", '</v1/a>; rel="next"'),
    ("Link", '</v1/b>; rel="prev"'),
    ("Set-Cookie", "sid=1; Path=/; Secure; HttpOnly; SameSite=None; Partitioned"),
    ("Set-Cookie", "pref=a; Path=/v1"),
    ("Set-Cookie", "pref=b; Path=/v2"),
    ("X-Empty", ""),
]
EXACT_BODY = [b"\x00\xff\r\n", b"", b"binary body"]


def exact_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """A backend whose response must reach the caller byte for byte, line for line."""
    start_response(EXACT_STATUS, list(EXACT_HEADERS))
    return list(EXACT_BODY)
