"""§12: a key's effective metadata (its customer's, then its own on top) is what a real
upstream receives, signed, and what rate limits read; a customer change is honoured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.test import Client

from envroute import EnvRouter, verify_signature
from tests.proxy.conftest import Upstream, echoed, header_map
from tests.support.apps import SECRET

SIGNING = "signing-secret-for-customer-identity"


@pytest.fixture
def router(tmp_path: Path, primary: Upstream) -> Iterator[EnvRouter]:
    gateway = EnvRouter(None, {
        "secret": SECRET, "signing_secret": SIGNING,
        "store": {"url": f"sqlite:///{tmp_path / 'k.db'}"},
        "backends": {"remote": {"url": primary.url}},
        "routes": [{"when": {"tier": "gold"}, "backend": "remote"}],
        "rate_limits": {"rules": [{"limit": "1/minute", "limit_from": "rate_limit",
                                   "per": "customer_id"}]},
    })
    yield gateway
    gateway.close()


@pytest.mark.parametrize("own, effective", [
    pytest.param({}, {"tier": "gold", "rate_limit": "3/minute", "region": "us"},
                 id="customer-only"),
    pytest.param({"region": "eu"}, {"tier": "gold", "rate_limit": "3/minute", "region": "eu"},
                 id="key-wins"),
])
def test_the_upstream_receives_the_effective_metadata_signed(
    router: EnvRouter, primary: Upstream, own: dict[str, str], effective: dict[str, str]
) -> None:
    router.customers.create("acme", metadata={"tier": "gold", "rate_limit": "3/minute",
                                              "region": "us"})
    key = router.keys.create("production", customer_id="acme", metadata=own).secret
    client = Client(router)
    statuses = []
    for _ in range(4):  # the customer's rate_limit (3/minute), not the rule's default (1)
        response = client.get("/v1/x", headers={"Authorization": f"Bearer {key}"})
        statuses.append(response.status_code)
        if response.status_code == 200:
            received = header_map(echoed(response.data))
            assert json.loads(received["envroute-metadata"][0]) == effective
            assert received["envroute-customer-id"] == ["acme"]
            flat = {name: values[0] for name, values in received.items()}
            assert verify_signature(flat, SIGNING)
    assert statuses == [200, 200, 200, 429]

    # a new tier: the limit (now 9/minute) and the route both read it at once
    router.customers.update("acme", set_meta={"tier": "free", "rate_limit": "9/minute"})
    response = client.get("/v1/x", headers={"Authorization": f"Bearer {key}"})
    assert (response.status_code, response.get_json()["code"]) == (403, "no_route")
