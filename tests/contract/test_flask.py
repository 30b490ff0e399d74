"""§1 and §18 for Flask: ``EnvRoute(app)`` and the factory's ``init_app``, the
``envroute_id`` converter, refusals as problems through Flask's own test client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_envroute import EnvRoute, current_identity, get_state

from envroute import KeyManager
from envroute.ids import new_id
from tests.support.apps import SECRET


def build(tmp_path: Path, factory: bool) -> Flask:
    app = Flask(__name__)
    app.config["ENVROUTE"] = {
        "secret": SECRET, "store": {"url": f"sqlite:///{tmp_path / 'keys.db'}"},
        "routes": [{"when": {"environment": ["sandbox", "production"]}, "backend": "app"}]}

    if factory:
        EnvRoute().init_app(app)
    else:
        EnvRoute(app)

    # After the extension, as for any Flask converter: rules are compiled when added.
    @app.get("/v1/charges/<envroute_id:charge_id>")
    def charge(charge_id: str) -> dict[str, Any]:
        return {"id": charge_id, "environment": current_identity.environment}

    return app


@pytest.mark.parametrize("factory", [pytest.param(False, id="EnvRoute(app)"),
                                     pytest.param(True, id="init_app")])
@pytest.mark.parametrize(("key_env", "id_env", "status", "code"), [
    pytest.param("sandbox", "sandbox", 200, None, id="test-id-test-key"),
    pytest.param("production", "production", 200, None, id="live-id-live-key"),
    pytest.param("sandbox", "production", 404, "resource_missing", id="live-id-test-key"),
    pytest.param("production", "sandbox", 404, "resource_missing", id="test-id-live-key"),
])
def test_envroute_id_converter(tmp_path: Path, factory: bool, key_env: str, id_env: str,
                               status: int, code: str | None) -> None:
    app = build(tmp_path, factory)
    state = get_state(app)
    try:
        secret = KeyManager(state.store, state.settings).create(key_env).secret
        charge_id = new_id("ch", id_env)
        response = app.test_client().get(f"/v1/charges/{charge_id}",
                                          headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == status
        if code is None:
            assert response.json == {"id": charge_id, "environment": key_env}
        else:
            assert response.headers["Content-Type"] == "application/problem+json"
            assert response.json is not None and response.json["code"] == code
            assert response.json["request_id"] == response.headers["Request-Id"]
    finally:
        state.close()


def test_refusal_before_the_view(tmp_path: Path) -> None:
    app = build(tmp_path, factory=False)
    try:
        response = app.test_client().get(f"/v1/charges/{new_id('ch', 'sandbox')}")
        assert response.status_code == 401
        assert response.json is not None and response.json["code"] == "missing_credentials"
        assert "WWW-Authenticate" in response.headers
    finally:
        get_state(app).close()
