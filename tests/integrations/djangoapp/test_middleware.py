"""EnvRouteMiddleware through Django's test client: identity, routing, refusals, Request-Id."""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import Client, override_settings
from django_envroute.gateway import get_key_manager
from django_envroute.models import APIKey

from envroute import ConfigError, IssuedKey
from envroute.keys import checksum
from tests.integrations.conftest import Upstream, bearer, problem_of

from . import views

pytestmark = pytest.mark.django_db
MakeKey = Callable[..., IssuedKey]


def get(client: Client, path: str = "/v1/charges", **headers: str) -> Any:
    return client.get(path, headers=headers)


def test_a_production_key_reaches_the_view_with_its_identity(client: Client,
                                                            make_key: MakeKey) -> None:
    issued = make_key("production", metadata={"customer": "acme"})
    response = get(client, **bearer(issued.secret))
    assert response.status_code == 200
    data = response.json()
    assert data["served_by"] == "django"
    assert data["key_id"] == issued.record.id
    assert data["environment"] == "production"
    assert data["metadata"] == {"customer": "acme"}
    assert data["same_in_environ"] is True
    assert data["authorization"] is None  # the credential never reaches the view
    assert response["Request-Id"].startswith("req_")


def test_a_sandbox_key_is_answered_by_the_sandbox_backend_without_a_view(
        client: Client, make_key: MakeKey) -> None:
    issued = make_key("sandbox")
    views.VIEW_CALLS.clear()
    response = get(client, **bearer(issued.secret))
    assert response.status_code == 200
    assert response.streaming
    assert b"".join(response.streaming_content) == f"sandbox {issued.record.id}".encode()
    assert response["X-Served-By"] == "sandbox"
    assert response["Content-Type"] == "text/plain"
    assert response["Request-Id"].startswith("req_")
    assert views.VIEW_CALLS == []


@pytest.mark.parametrize(("how", "status", "code"), [
    pytest.param("none", 401, "missing_credentials", id="missing"),
    pytest.param("garbage", 401, "invalid_key", id="malformed"),
    pytest.param("unknown", 401, "invalid_key", id="unknown-key"),
    pytest.param("revoked", 401, "revoked_key", id="revoked"),
    pytest.param("expired", 401, "expired_key", id="expired"),
    pytest.param("staging", 403, "no_route", id="no-route"),
    pytest.param("restricted-post", 403, "insufficient_scope", id="outside-scope"),
])
def test_refusals_are_problem_json(client: Client, make_key: MakeKey, how: str, status: int,
                                   code: str) -> None:
    headers: dict[str, str] = {}
    method = "get"
    if how == "garbage":
        headers = bearer("sk_live_not-a-key")
    elif how == "unknown":
        body = "sk_live_" + "A" * 32  # well-formed, right checksum, never issued
        headers = bearer(body + checksum(body))
    elif how == "revoked":
        issued = make_key()
        get_key_manager().revoke(issued.record.id)
        headers = bearer(issued.secret)
    elif how == "expired":
        issued = make_key(expires_in=60)
        APIKey.objects.filter(pk=issued.record.id).update(
            expires_at=issued.record.created_at - timedelta(days=1))
        headers = bearer(issued.secret)
    elif how == "staging":
        headers = bearer(make_key("staging").secret)
    elif how == "restricted-post":
        headers = bearer(make_key(scopes=["charges:read"]).secret)
        method = "post"
    views.VIEW_CALLS.clear()
    response = getattr(client, method)("/v1/charges", headers=headers)
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    problem = problem_of(response.content)
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["request_id"] == response["Request-Id"]
    assert ("WWW-Authenticate" in response) == (status == 401)
    assert views.VIEW_CALLS == []


def test_a_restricted_key_within_its_scope_is_admitted(client: Client,
                                                       make_key: MakeKey) -> None:
    issued = make_key(scopes=["charges:read"])
    assert issued.secret.startswith("rk_live_")
    assert get(client, **bearer(issued.secret)).status_code == 200


def test_every_credential_form_is_accepted(client: Client, make_key: MakeKey) -> None:
    secret = make_key().secret
    basic = base64.b64encode(f"{secret}:".encode()).decode()
    for headers in (bearer(secret), {"Authorization": f"Basic {basic}"}, {"X-API-Key": secret}):
        assert get(client, **headers).status_code == 200


def test_client_sent_envroute_headers_are_dropped(client: Client, make_key: MakeKey) -> None:
    response = get(client, **bearer(make_key().secret), **{"Envroute-Key-Id": "key_forged"})
    assert response.json()["client_key_id_header"] is None


def test_head_refusal_has_no_body(client: Client) -> None:
    response = client.head("/v1/charges")
    assert response.status_code == 401
    assert response.content == b""


def test_exempt_paths_pass_without_a_key_and_still_get_a_request_id(client: Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "identity": False}
    assert response["Request-Id"].startswith("req_")
    assert client.get("/admin/login/")["Request-Id"].startswith("req_")


def test_django_errors_after_admission_keep_the_request_id(client: Client,
                                                           make_key: MakeKey) -> None:
    response = get(client, "/v1/missing", **bearer(make_key().secret))
    assert response.status_code == 404
    assert response["Request-Id"].startswith("req_")


def test_override_settings_rebuilds_the_gateway(client: Client, make_key: MakeKey) -> None:
    secret = make_key("sandbox").secret
    assert get(client, **bearer(secret)).streaming
    with override_settings(ENVROUTE={**_config(), "routes": [
            {"when": {"environment": "production"}, "backend": "app"}]}):
        response = get(client, **bearer(secret))
        assert response.status_code == 403
        assert problem_of(response.content)["code"] == "no_route"


def test_a_url_backend_is_streamed_through_django(client: Client, make_key: MakeKey,
                                                 upstream: Upstream) -> None:
    config = {**_config(), "backends": {"sandbox": {"url": upstream.url}}}
    with override_settings(ENVROUTE=config):
        issued = make_key("sandbox")
        response = get(client, "/v1/charges?x=1", **bearer(issued.secret))
        assert response.status_code == 200
        assert response.streaming
        seen = json.loads(b"".join(response.streaming_content))
    assert seen == {"path": "/v1/charges", "key_id": issued.record.id,
                    "environment": "sandbox", "authorization": None}
    assert response["X-Upstream"] == "yes"
    assert ("Set-Cookie", "seen=1; Path=/") in list(response.items())  # the line, as sent
    assert "Connection" not in response


def test_an_unreachable_url_backend_is_502(client: Client, make_key: MakeKey) -> None:
    from tests.support.processes import free_port

    config = {**_config(), "backends": {"sandbox": {"url": f"http://127.0.0.1:{free_port()}"}}}
    with override_settings(ENVROUTE=config):
        response = get(client, **bearer(make_key("sandbox").secret))
    assert response.status_code == 502
    assert problem_of(response.content)["code"] == "backend_unavailable"


def test_rate_limits_answer_429_with_retry_after(client: Client, make_key: MakeKey) -> None:
    config = {**_config(), "rate_limits": {"rules": [{"limit": "2/minute", "per": "key"}]}}
    with override_settings(ENVROUTE=config):
        secret = make_key().secret
        statuses = [get(client, **bearer(secret)) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[0]["RateLimit-Limit"] == "2"
    assert "Retry-After" in statuses[2]
    assert problem_of(statuses[2].content)["code"] == "rate_limited"


def test_a_store_without_its_tables_fails_closed_with_503(client: Client,
                                                         make_key: MakeKey) -> None:
    secret = make_key().secret
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute("DROP TABLE django_envroute_keysecret")
    response = get(client, **bearer(secret))
    assert response.status_code == 503
    assert problem_of(response.content)["code"] == "store_unavailable"


def test_access_log_names_the_key_never_the_secret(client: Client, make_key: MakeKey,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    issued = make_key()
    with caplog.at_level("INFO", logger="envroute.access"):
        get(client, **bearer(issued.secret))
        get(client)
    lines = [r.getMessage() for r in caplog.records if r.name == "envroute.access"]
    assert len(lines) == 2
    assert issued.record.id in lines[0] and " 200 " in lines[0]
    assert " 401 " in lines[1]
    assert all(issued.secret not in line for line in lines)


def test_a_broken_config_stops_the_server_at_start_up() -> None:
    with override_settings(ENVROUTE={**_config(), "secret": "short"}), \
            pytest.raises(ImproperlyConfigured, match="secret: must be at least 32"):
        Client().get("/health")


def test_a_backend_asking_for_the_gateway_as_it_is_imported_is_told_why() -> None:
    from django_envroute.gateway import get_router

    config = {**_config(), "backends": {
        "sandbox": {"app": "tests.integrations.djangoapp.eager:app"}}}

    def waited(signum: int, frame: Any) -> None:
        raise TimeoutError("get_router() waited for itself")

    previous = signal.signal(signal.SIGALRM, waited)  # a lock's wait is interrupted by it
    signal.alarm(60)
    try:
        with override_settings(ENVROUTE=config), \
                pytest.raises(ConfigError, match="asked for while it was being built"):
            get_router()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _config() -> dict[str, Any]:
    from django.conf import settings

    config: dict[str, Any] = dict(settings.ENVROUTE)
    return config


def test_a_view_crossing_environments_is_403_and_its_writes_are_rolled_back(
        client: Client, make_key: MakeKey, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from django.contrib.auth.models import User

    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    with caplog.at_level("INFO", logger="envroute.access"):
        response = get(client, "/v1/cross", **bearer(make_key().secret))
    assert response.status_code == 403
    problem = problem_of(response.content)
    assert problem["code"] == "environment_mismatch"
    assert problem["request_id"] == response["Request-Id"]
    assert not User.objects.filter(username="written-before-the-fence").exists()
    line = [r for r in caplog.records if r.name == "envroute.access"][-1]
    assert (line.status, line.code) == (403, "environment_mismatch")  # type: ignore[attr-defined]


def test_the_access_line_is_written_once_for_a_backend_response(
        client: Client, make_key: MakeKey, caplog: pytest.LogCaptureFixture) -> None:
    issued = make_key("sandbox")
    with caplog.at_level("INFO", logger="envroute.access"):
        response = get(client, **bearer(issued.secret))
        assert b"".join(response.streaming_content).startswith(b"sandbox")
        response.close()  # as Django's WSGI handler does once the body is sent
    lines = [r for r in caplog.records if r.name == "envroute.access"]
    assert len(lines) == 1
    assert (lines[0].backend, lines[0].status) == ("sandbox", 200)  # type: ignore[attr-defined]
