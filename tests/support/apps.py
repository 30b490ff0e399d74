"""Tiny WSGI apps and constants the tests share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


def text_app(body: str) -> Callable[..., list[bytes]]:
    """A WSGI app answering ``body`` plus what it was told about the caller."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        identity = environ.get("envroute.identity")
        who = f" {identity.key_id} {identity.environment}" if identity else ""
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{body}{who}".encode()]

    return app
