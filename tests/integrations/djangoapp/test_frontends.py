"""One request path, every front end: a backend's response reaches the caller the same way
through the WSGI gateway (as under gunicorn), Flask and Django — every header line in
order, every cookie, the status line and the body bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import override_settings
from flask import Flask
from flask_envroute import EnvRoute
from werkzeug.test import Client

from envroute import EnvRouter
from tests.integrations.conftest import (
    EXACT_BODY,
    EXACT_HEADERS,
    EXACT_STATUS,
    SECRET,
    Upstream,
    exact_app,
)

pytestmark = pytest.mark.django_db
Seen = tuple[str, list[tuple[str, str]], bytes]


def config(store_url: str, backend: dict[str, Any]) -> dict[str, Any]:
    return {"secret": SECRET, "store": {"url": store_url}, "backends": {"exact": backend},
            "routes": [{"when": {"environment": "sandbox"}, "backend": "exact"}]}


def through_core(cfg: dict[str, Any], key: str) -> Seen:
    router = EnvRouter(None, cfg)
    try:
        return _send(router, key)
    finally:
        router.close()


def through_flask(cfg: dict[str, Any], key: str) -> Seen:
    app = Flask(__name__)
    EnvRoute(app, config=cfg)
    return _send(app, key)


def through_django(cfg: dict[str, Any], key: str) -> Seen:
    with override_settings(ENVROUTE=cfg):
        return _send(WSGIHandler(), key)


def _send(app: Callable[..., Any], key: str) -> Seen:
    response = Client(app).get("/v1/charges", headers={"X-API-Key": key})
    lines = [(n, v) for n, v in response.headers.to_wsgi_list() if n != "Request-Id"]
    assert response.headers["Request-Id"].startswith("req_")
    return response.status, lines, response.get_data()


FRONT_ENDS = [pytest.param(through_core, id="wsgi"), pytest.param(through_flask, id="flask"),
              pytest.param(through_django, id="django")]


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_an_in_process_backends_response_arrives_exactly(
        front_end: Callable[[dict[str, Any], str], Seen], tmp_path: Path) -> None:
    cfg = config(f"sqlite:///{tmp_path / 'keys.db'}",
                 {"app": "tests.integrations.conftest:exact_app"})
    key = _key(cfg)
    status, lines, body = front_end(cfg, key)
    assert status == EXACT_STATUS
    assert lines == EXACT_HEADERS
    assert body == b"".join(EXACT_BODY)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_a_url_backends_response_arrives_the_same_through_every_front_end(
        front_end: Callable[[dict[str, Any], str], Seen], tmp_path: Path) -> None:
    with Upstream(exact_app) as upstream:
        cfg = config(f"sqlite:///{tmp_path / 'keys.db'}", {"url": upstream.url})
        key = _key(cfg)
        reference = through_core(cfg, key)
        seen = front_end(cfg, key)
    assert seen == reference
    status, lines, body = seen
    assert status == EXACT_STATUS and body == b"".join(EXACT_BODY)
    for line in EXACT_HEADERS[1:]:  # the proxy's own framing headers aside
        assert line in lines
    assert [v for n, v in lines if n == "Set-Cookie"] == [
        v for n, v in EXACT_HEADERS if n == "Set-Cookie"]


def _key(cfg: dict[str, Any]) -> str:
    router = EnvRouter(None, {**cfg, "backends": {}, "routes": []})
    try:
        return router.keys.create("sandbox").secret
    finally:
        router.close()
