"""``EnvRoute``: configuration, per-app state, routing before Flask, identity, refusals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask_envroute import EnvRoute, current_identity, get_identity, get_state

from envroute import ConfigError, EnvRouter, IssuedKey
from tests.conftest import text_app
from tests.integrations.conftest import bearer, problem_of

from .conftest import VIEW_CALLS, build_app

Issue = Callable[..., IssuedKey]


def test_a_production_key_reaches_the_view_with_current_identity(flask_app: Flask,
                                                                issue: Issue) -> None:
    issued = issue(metadata={"customer": "acme"})
    response = flask_app.test_client().get("/v1/charges", headers=bearer(issued.secret))
    assert response.status_code == 200
    assert response.json == {"served_by": "flask", "key_id": issued.record.id,
                             "environment": "production", "metadata": {"customer": "acme"}}
    assert response.headers["Request-Id"].startswith("req_")


def test_a_sandbox_key_is_routed_before_flask_sees_the_request(flask_app: Flask,
                                                              issue: Issue) -> None:
    issued = issue("sandbox")
    before: list[str] = []
    flask_app.before_request(lambda: before.append("flask") and None)
    VIEW_CALLS.clear()
    response = flask_app.test_client().get("/v1/charges", headers=bearer(issued.secret))
    assert response.get_data(as_text=True) == f"sandbox {issued.record.id} sandbox"
    assert VIEW_CALLS == [] and before == []


@pytest.mark.parametrize(("headers", "status", "code"), [
    pytest.param({}, 401, "missing_credentials", id="missing"),
    pytest.param(bearer("sk_live_typo"), 401, "invalid_key", id="malformed"),
    pytest.param({"X-API-Key": "sk_test_" + "0" * 38}, 401, "invalid_key", id="bad-checksum"),
])
def test_refusals_are_problem_json_never_html(flask_app: Flask, headers: dict[str, str],
                                              status: int, code: str) -> None:
    response = flask_app.test_client().get("/v1/charges", headers=headers)
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    assert problem_of(response.data)["code"] == code
    assert b"<html" not in response.data.lower()


def test_revoked_and_unrouted_keys(base_config: dict[str, Any]) -> None:
    config = {**base_config, "environments": {"sandbox": {}, "production": {},
                                              "staging": {"prefix": "sk_stage_"}}}
    app = build_app(config)
    manager = get_state(app).key_manager()
    revoked = manager.create("production")
    manager.revoke(revoked.record.id)
    client = app.test_client()
    refused = client.get("/v1/charges", headers=bearer(revoked.secret))
    assert (refused.status_code, problem_of(refused.data)["code"]) == (401, "revoked_key")
    staging = manager.create("staging")
    unrouted = client.get("/v1/charges", headers=bearer(staging.secret))
    assert (unrouted.status_code, problem_of(unrouted.data)["code"]) == (403, "no_route")


def test_flask_errors_after_admission_are_flasks_own(flask_app: Flask, issue: Issue) -> None:
    response = flask_app.test_client().get("/nowhere", headers=bearer(issue().secret))
    assert response.status_code == 404
    assert response.headers["Request-Id"].startswith("req_")


def test_application_factory_with_init_app(base_config: dict[str, Any]) -> None:
    extension = EnvRoute(backends={"sandbox": text_app("sandbox")})
    apps = []
    for _ in range(2):
        app = Flask(__name__)
        app.config["ENVROUTE"] = base_config
        extension.init_app(app)
        apps.append(app)
    first, second = (get_state(app) for app in apps)
    assert first.router is not second.router
    assert isinstance(apps[0].wsgi_app, EnvRouter)
    assert not hasattr(extension, "app")
    assert "envroute" in apps[0].cli.commands


def test_constructor_config_wins_over_app_config(base_config: dict[str, Any]) -> None:
    app = Flask(__name__)
    app.config["ENVROUTE"] = {"secret": "too short"}
    EnvRoute(app, config=base_config, backends={"sandbox": text_app("s")})
    assert get_state(app).settings.store_url == base_config["store"]["url"]


@pytest.mark.parametrize(("config", "message"), [
    pytest.param(None, "app.config['ENVROUTE']", id="missing"),
    pytest.param({"secret": "short"}, "secret: must be at least 32", id="short-secret"),
    pytest.param({"secret": "s" * 40, "routes": [{"when": {}, "backend": "nope"}]},
                 "routes[0].backend: backend 'nope' is not defined", id="undefined-backend"),
])
def test_bad_config_stops_the_app_naming_the_key(config: dict[str, Any] | None,
                                                 message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_app(config)
    assert message in str(caught.value)


def test_init_app_twice_is_refused(base_config: dict[str, Any]) -> None:
    app = build_app(base_config)
    with pytest.raises(RuntimeError, match="already initialised"):
        EnvRoute(app)


def test_identity_outside_an_admitted_request(flask_app: Flask) -> None:
    with flask_app.test_request_context("/"):
        assert get_identity() is None
        with pytest.raises(RuntimeError, match="no envroute identity"):
            _ = current_identity.key_id
    with pytest.raises(RuntimeError, match="not initialised"), Flask("bare").app_context():
        get_state()


def test_state_close_releases_the_gateway(base_config: dict[str, Any],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    app = build_app(base_config)
    state = get_state(app)
    closed: list[bool] = []
    monkeypatch.setattr(state.router.store, "close", lambda: closed.append(True))
    state.close()
    assert closed == [True]
    assert state.key_manager() is state.router.keys  # one manager, wired to the router
