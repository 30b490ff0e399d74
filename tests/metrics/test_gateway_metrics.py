"""The gateway records each request once and answers the metrics path itself (in process)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from envroute import EnvRouter, KeyManager
from envroute.errors import StoreUnavailable

from .support import Samples, delta, parse, value

TOKEN = "scrape-token-0123456789"


class Backend:
    """A WSGI app that counts its calls, so a test can say nothing reached it."""

    def __init__(self) -> None:
        self.calls = 0
        self.status = "200 OK"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.calls += 1
        start_response(self.status, [("Content-Type", "text/plain")])
        return [b"backend"]


@pytest.fixture
def backend() -> Backend:
    return Backend()


def build(config: dict[str, Any], backend: Backend, **metrics: str) -> EnvRouter:
    return EnvRouter(backend, {**config, "metrics": metrics} if metrics else config,
                     backends={"sandbox": backend})


@pytest.fixture
def gateway(base_config: dict[str, Any], backend: Backend) -> Iterator[EnvRouter]:
    router = build(base_config, backend, path="/metrics", token=TOKEN)
    yield router
    router.store.close()


def call(app: EnvRouter, path: str = "/v1/charges", method: str = "GET",
         **headers: str) -> tuple[int, bytes]:
    seen: list[str] = []

    def start_response(status: str, response_headers: Any, exc_info: Any = None) -> None:
        seen.append(status)

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
               "SERVER_NAME": "test", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
               **headers}
    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return int(seen[0][:3]), body


def scrape(app: EnvRouter) -> Samples:
    status, body = call(app, "/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert status == 200
    return parse(body.decode())


def test_each_request_is_counted_once(gateway: EnvRouter, backend: Backend) -> None:
    key = KeyManager(gateway.store, gateway.settings).create("sandbox").secret
    before = scrape(gateway)
    assert call(gateway, HTTP_AUTHORIZATION=f"Bearer {key}")[0] == 200
    assert call(gateway, HTTP_AUTHORIZATION=f"Bearer {key}")[0] == 200
    assert call(gateway)[0] == 401
    backend.status = "500 Internal Server Error"
    assert call(gateway, HTTP_AUTHORIZATION=f"Bearer {key}")[0] == 500
    changes = delta(before, scrape(gateway))
    assert value(changes, "envroute_requests_total", environment="sandbox", backend="sandbox",
                 code="ok") == 3  # the backend answered, whatever it said
    assert value(changes, "envroute_responses_total", environment="sandbox",
                 backend="sandbox", status="2xx") == 2
    assert value(changes, "envroute_responses_total", environment="sandbox",
                 backend="sandbox", status="5xx") == 1
    assert value(changes, "envroute_responses_total", environment="-", backend="-",
                 status="4xx") == 1
    assert value(changes, "envroute_requests_total", environment="-", backend="-",
                 code="missing_credentials") == 1
    assert value(changes, "envroute_request_duration_seconds_count", environment="sandbox",
                 backend="sandbox") == 3
    assert value(changes, "envroute_auth_cache_total", result="miss") == 1
    assert value(changes, "envroute_auth_cache_total", result="hit") == 2
    assert sum(v for (name, _), v in changes.items() if name == "envroute_requests_total") == 4
    assert backend.calls == 3


def test_store_errors(gateway: EnvRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    key = KeyManager(gateway.store, gateway.settings).create("sandbox").secret

    def unavailable(digest: bytes) -> None:
        raise StoreUnavailable("the database is down")

    monkeypatch.setattr(gateway.store, "lookup", unavailable)
    before = scrape(gateway)
    assert call(gateway, HTTP_AUTHORIZATION=f"Bearer {key}")[0] == 503
    changes = delta(before, scrape(gateway))
    assert value(changes, "envroute_store_errors_total") == 1
    assert value(changes, "envroute_requests_total", environment="-", backend="-",
                 code="store_unavailable") == 1


@pytest.mark.parametrize(("headers", "status"), [
    pytest.param({"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}, 200, id="the-token"),
    pytest.param({}, 401, id="no-token"),
    pytest.param({"HTTP_AUTHORIZATION": "Bearer another"}, 401, id="another-token"),
    pytest.param({"HTTP_AUTHORIZATION": "Bearer {key}"}, 401, id="an-api-key"),
    pytest.param({"HTTP_X_API_KEY": "{key}"}, 401, id="an-api-key-header"),
])
def test_the_metrics_path_is_answered_by_the_gateway_and_not_counted(
        gateway: EnvRouter, backend: Backend, headers: dict[str, str], status: int) -> None:
    key = KeyManager(gateway.store, gateway.settings).create("sandbox").secret
    headers = {name: text.format(key=key) for name, text in headers.items()}
    before = scrape(gateway)
    answer, body = call(gateway, "/metrics", **headers)
    assert answer == status
    if status == 401:
        assert json.loads(body)["code"] in ("missing_credentials", "invalid_token")
    assert delta(before, scrape(gateway)) == {}
    assert backend.calls == 0


@pytest.mark.parametrize(("method", "path", "status", "reaches_backend"), [
    pytest.param("HEAD", "/metrics", 200, False, id="head"),
    pytest.param("POST", "/metrics", 401, False, id="post-is-an-ordinary-request"),
    pytest.param("GET", "/metrics/", 401, False, id="not-exact"),
])
def test_only_get_and_head_of_the_exact_path(gateway: EnvRouter, backend: Backend, method: str,
                                             path: str, status: int,
                                             reaches_backend: bool) -> None:
    answer, body = call(gateway, path, method, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert answer == status
    if method == "HEAD":
        assert body == b""
    else:  # the metrics token is no API key
        assert json.loads(body)["code"] == "invalid_key"
    assert backend.calls == int(reaches_backend)


def test_without_a_path_metrics_are_off(base_config: dict[str, Any], backend: Backend) -> None:
    router = build(base_config, backend)
    assert not router.own_paths
    assert call(router, "/metrics")[0] == 401  # an ordinary path, that needs a key
    router.store.close()


def test_the_health_path_is_not_counted(base_config: dict[str, Any], backend: Backend) -> None:
    router = EnvRouter(backend, {**base_config, "health": {"path": "/healthz"},
                                 "metrics": {"path": "/metrics", "token": TOKEN}},
                       backends={"sandbox": backend})
    before = scrape(router)
    assert call(router, "/healthz")[0] == 200
    assert delta(before, scrape(router)) == {}
    router.store.close()
