"""§6, §7, §8 and §17 through a WSGI client: problem JSON, statuses, headers, the environ,
the access line's JSON keys and the health path, one row per contract line."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from envroute import CustomerManager, EnvRouter, KeyManager
from tests.support.apps import SECRET

PROBLEM = {"type", "title", "status", "detail", "code", "request_id"}
ACCESS = {"request_id", "key_id", "environment", "customer_id", "backend", "method", "path",
          "status", "code", "duration_ms"}


def identity_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Reports what §6 promises a backend, and any trace of the caller's credential."""
    identity = environ["envroute.identity"]
    leaked = sorted(k for k, v in environ.items()
                    if isinstance(v, str) and ("sk_test_" in v or "Bearer" in v))
    body = {"key_id": identity.key_id, "environment": identity.environment,
            "customer_id": identity.customer_id, "metadata": dict(identity.metadata),
            "source": identity.source, "backend": environ["envroute.backend"],
            "leaked": leaked}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


def failing_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    raise RuntimeError("the backend's own bug")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[EnvRouter]:
    config = {
        "secret": SECRET,
        "store": {"url": f"sqlite:///{tmp_path / 'keys.db'}"},
        "scopes": {"charges:read": ["GET /v1/charges"]},
        "health": {"path": "/healthz"},
        "logging": {"format": "json"},
        "auth": {"query_param": "api_key"},
        "routes": [
            {"when": {"environment": "sandbox", "broken": "yes"}, "backend": "broken"},
            {"when": {"environment": "sandbox"}, "backend_from": "backend"},
            {"when": {"environment": "sandbox"}, "backend": "app"},
        ],
        "rate_limits": {"rules": [{"limit": "2/minute", "per": "key",
                                   "when": {"tier": "free"}}]},
    }
    router = EnvRouter(identity_app, config, backends={"broken": failing_app})
    yield router
    router.close()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    body = json.loads(response.get_data())
    assert set(body) >= PROBLEM
    assert (body["status"], body["code"]) == (status, code)
    assert body["request_id"] == response.headers["Request-Id"]
    return body


def _keys(gateway: EnvRouter) -> KeyManager:
    return KeyManager(gateway.store, gateway.settings)


def expired(gateway: EnvRouter) -> dict[str, str]:
    return bearer(_keys(gateway).create("sandbox", expires_in=1e-6).secret)


def revoked(gateway: EnvRouter) -> dict[str, str]:
    issued = _keys(gateway).create("sandbox")
    _keys(gateway).revoke(issued.record.id)
    return bearer(issued.secret)


def disabled(gateway: EnvRouter) -> dict[str, str]:
    issued = _keys(gateway).create("sandbox")
    _keys(gateway).disable(issued.record.id)
    return bearer(issued.secret)


def disabled_customer(gateway: EnvRouter) -> dict[str, str]:
    customers = CustomerManager(gateway.store, gateway.settings)
    customers.create("acme")
    secret = _keys(gateway).create("sandbox", customer_id="acme").secret
    customers.disable("acme")
    return bearer(secret)


def restricted(gateway: EnvRouter) -> dict[str, str]:
    return bearer(_keys(gateway).create("sandbox", scopes=["charges:read"]).secret)


def production(gateway: EnvRouter) -> dict[str, str]:
    return bearer(_keys(gateway).create("production").secret)


def broken(gateway: EnvRouter) -> dict[str, str]:
    return bearer(_keys(gateway).create("sandbox", metadata={"broken": "yes"}).secret)


def unknown_backend(gateway: EnvRouter) -> dict[str, str]:
    return bearer(_keys(gateway).create("sandbox", metadata={"backend": "nowhere"}).secret)


def made_up(gateway: EnvRouter) -> dict[str, str]:
    secret = _keys(gateway).create("sandbox").secret
    return bearer(secret[:-7] + ("A" if secret[-7] != "A" else "B") + secret[-6:])


@pytest.mark.parametrize(("method", "path", "headers", "status", "code"), [
    pytest.param("GET", "/v1/charges", lambda g: {}, 401, "missing_credentials",
                 id="missing_credentials"),
    pytest.param("GET", "/v1/charges", lambda g: bearer("sk_test_nope"), 401,
                 "invalid_key", id="invalid_key-malformed"),
    pytest.param("GET", "/v1/charges", made_up, 401, "invalid_key", id="invalid_key-checksum"),
    pytest.param("GET", "/v1/charges", expired, 401, "expired_key", id="expired_key"),
    pytest.param("GET", "/v1/charges", revoked, 401, "revoked_key", id="revoked_key"),
    pytest.param("GET", "/v1/charges", disabled, 401, "disabled_key", id="disabled_key"),
    pytest.param("GET", "/v1/charges", disabled_customer, 401, "disabled_key",
                 id="disabled_key-customer"),
    pytest.param("GET", "/v1/charges", lambda g: bearer("a.b.c"), 401, "invalid_token",
                 id="invalid_token"),
    pytest.param("POST", "/v1/charges", restricted, 403, "insufficient_scope",
                 id="insufficient_scope"),
    pytest.param("GET", "/v1/charges", production, 403, "no_route", id="no_route"),
    pytest.param("GET", "/v1/charges", broken, 502, "backend_unavailable",
                 id="backend_unavailable-in-process"),
    pytest.param("GET", "/v1/charges", unknown_backend, 502, "backend_unavailable",
                 id="backend_unavailable-backend_from"),
])
def test_every_refusal_is_a_problem(gateway: EnvRouter, method: str, path: str,
                                    headers: Callable[[EnvRouter], dict[str, str]],
                                    status: int, code: str) -> None:
    sent = headers(gateway)
    response = Client(gateway).open(path, method=method, headers=sent)
    assert_problem(response, status, code)
    secret = sent.get("Authorization", " ").split(" ", 1)[1]
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "the backend's own bug" not in text
    assert len(secret) <= 12 or secret[8:-4] not in text  # prefix…last4 at most


def test_missing_credentials_carries_www_authenticate(gateway: EnvRouter) -> None:
    response = Client(gateway).get("/v1/charges")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_rate_limited_headers(gateway: EnvRouter) -> None:
    headers = bearer(_keys(gateway).create("sandbox", metadata={"tier": "free"}).secret)
    client = Client(gateway)
    answers = [client.get("/v1/charges", headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    for answer in answers:
        assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(
            answer.headers.keys())
    assert_problem(answers[2], 429, "rate_limited")
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert answers[0].headers["RateLimit-Limit"] == "2"


@pytest.mark.parametrize("credential", [
    pytest.param(lambda s: {"Authorization": f"Bearer {s}"}, id="bearer"),
    pytest.param(lambda s: {"Authorization": "Basic "
                            + base64.b64encode(f"{s}:".encode()).decode()}, id="basic"),
    pytest.param(lambda s: {"X-API-Key": s}, id="header"),
])
def test_environ_identity_and_no_credential(gateway: EnvRouter,
                                            credential: Callable[[str], dict[str, str]]
                                            ) -> None:
    CustomerManager(gateway.store, gateway.settings).create(
        "acme", metadata={"tier": "pro", "region": "us"})
    issued = _keys(gateway).create("sandbox", customer_id="acme", metadata={"region": "eu"})
    response = Client(gateway).get("/v1/charges", headers=credential(issued.secret))
    assert response.status_code == 200
    assert response.headers["Request-Id"]
    assert json.loads(response.get_data()) == {
        "key_id": issued.record.id, "environment": "sandbox", "customer_id": "acme",
        "metadata": {"tier": "pro", "region": "eu"}, "source": "api_key", "backend": "app",
        "leaked": []}


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_health_path(gateway: EnvRouter, method: str) -> None:
    response = Client(gateway).open("/healthz", method=method)
    assert response.status_code == 200
    assert response.headers["Request-Id"]
    if method == "GET":
        assert json.loads(response.get_data()) == {"status": "ok"}


def test_health_is_exact(gateway: EnvRouter) -> None:
    assert_problem(Client(gateway).get("/healthz/x"), 401, "missing_credentials")


def test_access_line_json_keys(gateway: EnvRouter, caplog: pytest.LogCaptureFixture) -> None:
    secret = _keys(gateway).create("sandbox").secret
    client = Client(gateway)
    with caplog.at_level(logging.INFO, logger="envroute.access"):
        client.get("/v1/charges", headers=bearer(secret)).close()
        client.get("/v1/charges").close()
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "envroute.access"]
    assert [set(line) for line in lines] == [ACCESS, ACCESS]
    ok, refused = lines
    assert (ok["status"], ok["code"], ok["backend"], ok["environment"]) == (
        200, None, "app", "sandbox")
    assert (refused["status"], refused["code"], refused["key_id"], refused["backend"]) == (
        401, "missing_credentials", None, None)
    assert secret not in caplog.text


def _basic(secret: str) -> str:
    return "Basic " + base64.b64encode(f"{secret}:".encode()).decode()


BAD = "sk_test_CCQeQzD66t0IG329U0pRFifCedrQFXjw2Yb3PX"


@pytest.mark.parametrize(("headers", "query", "status"), [
    pytest.param(lambda s: {"Authorization": f"Bearer {BAD}", "X-API-Key": s}, "", 401,
                 id="bad-bearer-beats-good-header"),
    pytest.param(lambda s: {"Authorization": _basic(BAD), "X-API-Key": s}, "", 401,
                 id="bad-basic-beats-good-header"),
    pytest.param(lambda s: {"X-API-Key": BAD}, "good", 401,
                 id="bad-header-beats-good-query"),
    pytest.param(lambda s: {"Authorization": f"Bearer {s}", "X-API-Key": BAD}, "", 200,
                 id="good-bearer-first"),
    pytest.param(lambda s: {}, "good", 200, id="query-when-configured"),
])
def test_first_credential_decides_alone(gateway: EnvRouter,
                                        headers: Callable[[str], dict[str, str]],
                                        query: str, status: int) -> None:
    secret = _keys(gateway).create("sandbox").secret
    path = f"/v1/charges?a=1&api_key={secret}&b=2" if query else "/v1/charges"
    response = Client(gateway).get(path, headers=headers(secret))
    assert response.status_code == status
    if status == 200:
        assert json.loads(response.get_data())["leaked"] == []
