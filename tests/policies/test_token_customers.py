"""A JWT's ``customer_claim`` naming a stored customer (§4, §12), through the gateway."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest

from envroute import EnvRouter
from envroute.stores.base import Change, CustomerRecord, utcnow

from .conftest import config
from .test_tokens import RSA_KEY, Seen, call, claims, jwt_section

Built = Callable[[EnvRouter], EnvRouter]


@pytest.fixture
def built() -> Iterator[Built]:
    """Gateways around a :class:`Seen` backend, closed after the test."""
    gateways: list[EnvRouter] = []

    def keep(gateway: EnvRouter) -> EnvRouter:
        gateways.append(gateway)
        return gateway

    yield keep
    for gateway in gateways:
        gateway.authenticator.close()
        gateway.store.close()


@pytest.mark.parametrize(("customer", "status", "metadata"), [
    pytest.param({"metadata": {"tier": "enterprise", "backend": "dedicated"}}, 200,
                 {"customer": "acme", "tier": "pro", "backend": "dedicated"},
                 id="beneath-the-claims"),
    pytest.param(None, 200, {"customer": "acme", "tier": "pro"}, id="unknown-adds-nothing"),
    pytest.param({"metadata": {"backend": "dedicated"}, "disabled_at": utcnow()}, 401,
                 None, id="disabled-customer"),
])
def test_a_tokens_customer(built: Built, any_store_url: str,
                           customer: dict[str, Any] | None, status: int,
                           metadata: dict[str, Any] | None) -> None:
    seen = Seen()
    settings = {**config(any_store_url, jwt=jwt_section(customer_claim="org_id")),
                "routes": [{"when": {}, "backend": "app"}]}
    gateway = built(EnvRouter(seen, settings))
    if customer is not None:
        gateway.store.create_customer(CustomerRecord(id="org_1", created_at=utcnow(),
                                                     **customer))
    token = jwt.encode(claims(org_id="org_1"), RSA_KEY, algorithm="RS256")
    answer = call(gateway, token)
    assert answer[0] == status
    if metadata is None:
        assert answer[1]["code"] == "disabled_key"  # type: ignore[index]
        return
    assert seen.identity is not None and seen.identity.customer_id == "org_1"
    assert dict(seen.identity.metadata) == metadata


def test_a_change_to_a_tokens_customer_is_honoured(built: Built, any_store_url: str) -> None:
    seen = Seen()
    gateway = built(EnvRouter(seen, {
        **config(any_store_url, jwt=jwt_section(customer_claim="org_id")),
        "routes": [{"when": {}, "backend": "app"}]}))
    store = gateway.store
    store.create_customer(CustomerRecord(id="org_1", created_at=utcnow(),
                                         metadata={"backend": "shared"}))
    token = jwt.encode(claims(org_id="org_1"), RSA_KEY, algorithm="RS256")
    assert call(gateway, token)[0] == 200
    store.update_customer("org_1", {"metadata": {"backend": "dedicated"}})
    store.set_customer_disabled("org_1", utcnow())
    gateway.authenticator.on_change(Change("customer", "org_1"))
    assert call(gateway, token)[0] == 401
    store.set_customer_disabled("org_1", None)
    gateway.authenticator.on_change(Change("customer", "org_1"))
    assert call(gateway, token)[0] == 200
    assert seen.identity is not None and seen.identity.metadata["backend"] == "dedicated"
