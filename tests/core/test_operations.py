"""Operating the gateway: health path, access lines, outage reports, stored backends,
``backend_from`` names, and the lifecycle (``close``, ``on_change``)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from envroute import EnvRouter, StoreUnavailable
from envroute.accesslog import OutageLog, escape
from envroute.keys import checksum
from envroute.stores.base import Change
from tests.integrations.conftest import Upstream
from tests.support.apps import SECRET, text_app

JSON_KEYS = {"request_id", "key_id", "environment", "customer_id", "backend", "method",
             "path", "status", "code", "duration_ms"}


class Recorder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.calls += 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"backend"]


def gateway(store_url: str, app: Any = None, **config: Any) -> EnvRouter:
    return EnvRouter(app or Recorder(), {"secret": SECRET, "store": {"url": store_url},
                                         **config})


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "envroute.access"]


# -- health ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "status", "body"), [
    pytest.param("GET", "/healthz", 200, b'{"status": "ok"}', id="get"),
    pytest.param("HEAD", "/healthz", 200, b"", id="head"),
    pytest.param("POST", "/healthz", 401, None, id="post-is-a-request"),
    pytest.param("GET", "/healthz/x", 401, None, id="only-the-exact-path"),
])
def test_the_health_path_is_answered_by_the_gateway(store_url: str, method: str, path: str,
                                                    status: int, body: bytes | None) -> None:
    backend = Recorder()
    router = gateway(store_url, backend, health={"path": "/healthz"})
    response = Client(router).open(path, method=method)
    assert response.status_code == status
    assert response.headers["Request-Id"].startswith("req_")
    if body is not None:
        assert response.get_data() == body
    assert backend.calls == 0
    router.close()


def test_health_is_503_when_the_key_store_does_not_answer(tmp_path: Path) -> None:
    (tmp_path / "keys.db").mkdir()  # a directory where the database should be
    backend = Recorder()
    router = gateway(f"sqlite:///{tmp_path / 'keys.db'}", backend, health={"path": "/healthz"})
    response = Client(router).get("/healthz")
    body = json.loads(response.get_data())
    assert (response.status_code, body["code"]) == (503, "store_unavailable")
    assert response.headers["Content-Type"] == "application/problem+json"
    assert backend.calls == 0
    router.close()


# -- access lines ------------------------------------------------------------------------


def test_json_access_lines_hold_exactly_the_contracts_keys(
        store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    router = gateway(store_url, logging={"format": "json"})
    key = router.keys.create("sandbox")
    caplog.set_level(logging.INFO, logger="envroute.access")
    client = Client(router)
    client.get("/v1/charges", headers={"X-API-Key": key.secret}).close()
    client.get("/v1/charges")
    ok, refused = (json.loads(r.getMessage()) for r in access_lines(caplog))
    assert set(ok) == set(refused) == JSON_KEYS
    assert (ok["key_id"], ok["environment"], ok["backend"], ok["status"], ok["code"]) == (
        key.record.id, "sandbox", "app", 200, None)
    assert (refused["key_id"], refused["backend"], refused["status"], refused["code"]) == (
        None, None, 401, "missing_credentials")
    assert key.secret not in caplog.text


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("path", [
    pytest.param("/v1/x%0D%0Areq_forged key=key_admin 200", id="crlf"),
    pytest.param("/v1/x%00%1b[31m", id="nul-and-escape"),
    pytest.param("/v1/x%E2%80%A8y", id="unicode-line-separator"),
    pytest.param("/v1/x%C2%85y", id="c1-next-line"),
])
def test_no_caller_can_split_or_forge_an_access_line(
        store_url: str, caplog: pytest.LogCaptureFixture, fmt: str, path: str) -> None:
    router = gateway(store_url, logging={"format": fmt})
    caplog.set_level(logging.INFO, logger="envroute.access")
    Client(router).get(path)
    (line,) = access_lines(caplog)
    message = line.getMessage()
    assert message.isprintable(), message
    assert not any(c in message for c in "\r\n\x00\x1b\u2028\x85")
    router.close()


def test_escape_is_reversible_and_keeps_plain_text() -> None:
    assert escape("key_abc /v1/é") == "key_abc /v1/é"
    assert escape("a\\b\r\n") == "a\\\\b\\x0d\\x0a"


SCRIPT = """
import sys
from werkzeug.test import Client
from envroute import EnvRouter
def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]
config = {"secret": "s" * 40, "store": {"url": sys.argv[1]}, "logging": %s}
Client(EnvRouter(app, config)).get("/v1/charges")
"""


@pytest.mark.parametrize(("logging_config", "expected"), [
    pytest.param({}, "GET /v1/charges 401 code=missing_credentials", id="default-text"),
    pytest.param({"format": "json"}, '"code":"missing_credentials"', id="json"),
    pytest.param({"access": False}, None, id="off"),
])
def test_access_lines_reach_stderr_when_nothing_else_handles_them(
        store_url: str, logging_config: dict[str, Any], expected: str | None) -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT % logging_config, store_url],
                            capture_output=True, text=True, timeout=60, check=True)
    if expected is None:
        assert result.stderr == ""
    else:
        assert expected in result.stderr and len(result.stderr.splitlines()) == 1


def test_an_outage_is_reported_when_it_starts_and_ends_not_per_request(
        store_url: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OutageLog, "QUIET", 0.0)
    router = gateway(store_url)
    key = router.keys.create("sandbox")
    real_lookup = router.store.lookup

    def down(key_hash: bytes) -> Any:
        raise StoreUnavailable("connection refused")

    client = Client(router)
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(router.store, "lookup", down)
    for n in range(50):
        body = f"sk_test_{n:032d}"  # well-formed, never cached: each asks the store
        made_up = body + checksum(body)
        assert client.get("/", headers={"X-API-Key": made_up}).status_code == 503
    monkeypatch.setattr(router.store, "lookup", real_lookup)
    client.get("/", headers={"X-API-Key": key.secret}).close()
    client.get("/", headers={"X-API-Key": key.secret}).close()
    lines = [r.getMessage() for r in caplog.records if r.name == "envroute"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("store unavailable: connection refused")
    assert "available again" in lines[1]
    router.close()


# -- backends by name: configured, stored, neither ----------------------------------------


def test_a_backend_from_name_that_is_neither_configured_nor_stored_is_502(
        store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    backend = Recorder()
    router = gateway(store_url, backend, routes=[{"when": {}, "backend_from": "backend"}])
    key = router.keys.create("sandbox", metadata={"backend": "ghost-1"}).secret
    response = Client(router).get("/", headers={"X-API-Key": key})
    assert response.status_code == 502
    assert json.loads(response.get_data())["code"] == "backend_unavailable"
    assert backend.calls == 0
    assert "'ghost-1'" in caplog.text
    router.close()


def test_stored_backends_are_served_and_reloaded_on_change(store_url: str) -> None:
    router = gateway(store_url, routes=[{"when": {}, "backend_from": "backend"}])
    key = router.keys.create("sandbox", metadata={"backend": "dedicated"}).secret
    client = Client(router)
    assert client.get("/", headers={"X-API-Key": key}).status_code == 502
    with Upstream(text_app("dedicated")) as upstream:
        router.stored_backends.add("dedicated", upstream.url)  # notify: reloads here at once
        response = client.get("/v1/x", headers={"X-API-Key": key})
        assert response.status_code == 200
        assert response.get_data().startswith(b"dedicated")
        response.close()
        other = gateway(store_url, routes=[{"when": {}, "backend_from": "backend"}])
        assert other.stored_backend_apps.names() == ["dedicated"]  # loaded at start
        router.stored_backends.remove("dedicated")
        assert client.get("/", headers={"X-API-Key": key}).status_code == 502
        other.on_change(Change("backend", "dedicated"))  # as the store pushes it
        assert other.stored_backend_apps.names() == []
        other.close()
    router.close()


# -- lifecycle -----------------------------------------------------------------------------


def test_close_releases_every_part_even_if_one_fails(store_url: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    router = gateway(store_url, rate_limits={"rules": [{"limit": "5/second"}]})
    closed: list[str] = []

    def closer(name: str, fail: bool = False) -> Any:
        def close() -> None:
            closed.append(name)
            if fail:
                raise RuntimeError("already gone")

        return close

    monkeypatch.setattr(router.authenticator, "close", closer("authenticator", fail=True))
    monkeypatch.setattr(router.policies[-1], "close", closer("rate limits"), raising=False)
    monkeypatch.setattr(router.stored_backend_apps, "close", closer("stored backends"))
    monkeypatch.setattr(router.store, "close", closer("store"))
    router.close()
    assert closed == ["authenticator", "rate limits", "stored backends", "store"]


def test_a_wsgi_app_can_answer_a_gateway_path(store_url: str) -> None:
    router = gateway(store_url)
    router.own_paths.add_app("/status", text_app("status"))
    response = Client(router).get("/status")
    assert (response.status_code, response.get_data()) == (200, b"status")
    assert response.headers["Request-Id"].startswith("req_")
    assert Client(router).post("/status").status_code == 401  # other methods: routed
    router.close()
