"""A JWT's identity through the proxy to a real upstream: whatever a token carries either
arrives as exactly the header values that were signed, or is refused at authentication
(401 invalid_token) without reaching the upstream, never a 502 blamed on it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from werkzeug.test import Client

from envroute import EnvRouter, verify_signature
from tests.proxy.conftest import Upstream, echoed, header_map
from tests.support.apps import SECRET

HS = "hs-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
SIGNING = "signing-secret-for-token-identity"


@pytest.fixture
def router(tmp_path: Path, primary: Upstream) -> Iterator[EnvRouter]:
    gateway = EnvRouter(None, {
        "secret": SECRET, "signing_secret": SIGNING,
        "store": {"url": f"sqlite:///{tmp_path / 'k.db'}"},
        "jwt": {"algorithms": ["HS256"], "secret": HS, "customer_claim": "org",
                "metadata_claims": ["tier"]},
        "backends": {"remote": {"url": primary.url}},
        "routes": [{"when": {}, "backend": "remote"}],
    })
    yield gateway
    for backend in gateway.backends.values():
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    gateway.store.close()


def token(**claims: Any) -> str:
    return jwt.encode({"environment": "sandbox", "exp": int(time.time()) + 60, **claims},
                      HS, algorithm="HS256")


@pytest.mark.parametrize(("sub", "org", "tier"), [
    pytest.param("jane.doe@example.com", "acme", "pro", id="dotted-subject"),
    pytest.param("josé", "café", "é\u2028", id="latin-1-ids-unicode-metadata"),
    pytest.param("a.sandbox", None, None, id="no-customer"),
])
def test_a_token_identity_arrives_signed(router: EnvRouter, primary: Upstream, sub: str,
                                         org: str | None, tier: str | None) -> None:
    claims = {k: v for k, v in {"sub": sub, "org": org, "tier": tier}.items() if v}
    response = Client(router).get("/v1/x", headers={"Authorization": f"Bearer {token(**claims)}"})
    assert response.status_code == 200, response.data
    received = header_map(echoed(response.data))
    assert received["envroute-key-id"] == [sub]
    assert received.get("envroute-customer-id") == ([org] if org else None)
    if tier:
        assert json.loads(received["envroute-metadata"][0]) == {"tier": tier}
    flat = {name: values[0] for name, values in received.items()}
    assert verify_signature(flat, SIGNING)


@pytest.mark.parametrize("claims", [
    pytest.param({"sub": "用户"}, id="subject-beyond-latin-1"),
    pytest.param({"sub": "a\r\nEnvroute-Environment: production"}, id="subject-crlf"),
    pytest.param({"sub": "a", "org": "acme\x00"}, id="customer-nul"),
    pytest.param({"sub": "a", "tier": "pro\nx"}, id="metadata-lf"),
])
def test_a_token_that_cannot_be_sent_is_refused_before_the_upstream(
        router: EnvRouter, primary: Upstream, claims: dict[str, str]) -> None:
    response = Client(router).get("/v1/x", headers={"Authorization": f"Bearer {token(**claims)}"})
    assert response.status_code == 401
    assert response.get_json()["code"] == "invalid_token"
    assert primary.stats()["requests"] == 0
