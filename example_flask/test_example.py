"""The example's own tests, as a user of envroute writes them (README: "Test it").

``envroute_key`` comes from envroute's pytest plugin (``-p envroute.testing``): a real
key in the app's key store (found through the app context), revoked when the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from example_flask.app import create_app


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv("EXAMPLE_FLASK_INSTANCE", str(tmp_path))
    flask_app = create_app()
    with flask_app.app_context():  # envroute_key finds the app's key store here
        yield flask_app


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_test_key_sees_sandbox_data(app, envroute_key):
    response = app.test_client().get("/v1/charges", headers=bearer(envroute_key("sandbox")))
    assert response.json["livemode"] is False
    assert [c["id"] for c in response.json["data"]] == [
        "ch_test_000000000000000000000001", "ch_test_000000000000000000000002"]


def test_a_live_id_with_a_test_key_is_missing(app, envroute_key):
    response = app.test_client().get("/v1/charges/ch_live_000000000000000000000001",
                                     headers=bearer(envroute_key("sandbox")))
    assert response.status_code == 404
    assert response.json["code"] == "resource_missing"


def test_a_live_key_sees_production_data(app, envroute_key):
    response = app.test_client().get("/v1/charges", headers=bearer(envroute_key("production")))
    assert response.json["livemode"] is True
    assert response.json["data"][0]["id"] == "ch_live_000000000000000000000001"
