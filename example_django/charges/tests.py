"""The example's own tests, as a user of envroute writes them (README: "Test it").

``envroute_key`` comes from envroute's pytest plugin (``-p envroute.testing``): a real
key in the project's key store, revoked when the test ends.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_test_key_sees_sandbox_data(client, envroute_key):
    response = client.get("/v1/charges", headers=bearer(envroute_key("sandbox")))
    assert response.json()["livemode"] is False
    assert [c["id"] for c in response.json()["data"]] == [
        "ch_test_000000000000000000000001", "ch_test_000000000000000000000002"]


def test_a_live_id_with_a_test_key_is_missing(client, envroute_key):
    response = client.get("/v1/charges/ch_live_000000000000000000000001",
                          headers=bearer(envroute_key("sandbox")))
    assert response.status_code == 404
    assert response.json()["code"] == "resource_missing"


def test_a_test_charge_stays_in_the_sandbox(client, envroute_key):
    made = client.post("/v1/charges", {"amount": 700}, content_type="application/json",
                       headers=bearer(envroute_key("sandbox"))).json()
    assert made["id"].startswith("ch_test_")
    live = client.get("/v1/charges", headers=bearer(envroute_key("production"))).json()
    assert made["id"] not in [c["id"] for c in live["data"]]
