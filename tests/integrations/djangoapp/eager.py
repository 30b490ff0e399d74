"""A backend module that asks for the gateway when it is imported (a mistake a project
can make): building the gateway imports it, so it must be told, not left waiting."""

from __future__ import annotations

from collections.abc import Iterable

from django_envroute.gateway import get_router

from envroute.typing import StartResponse, WSGIEnvironment

ROUTER = get_router()


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"eager"]
