"""``last_used_at``: written in batches by both stores, never once per request."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from werkzeug.test import Client

from .conftest import GatewayFactory, config, manager


def test_usage_is_batched(make_gateway: GatewayFactory, any_store_url: str,
                          monkeypatch: Any) -> None:
    gateway = make_gateway(config(any_store_url))
    keys = manager(gateway)
    first, second = keys.create("sandbox"), keys.create("production")
    writes: list[dict[str, datetime]] = []
    store = gateway.store
    real = store.record_usage

    def spy(used: Mapping[str, datetime]) -> None:
        writes.append(dict(used))
        real(used)

    monkeypatch.setattr(store, "record_usage", spy)
    client = Client(gateway)
    for _ in range(25):
        for issued in (first, second):
            response = client.get("/v1/x", headers={"Authorization": f"Bearer {issued.secret}"})
            assert response.status_code == 200
    assert writes == []  # 50 requests, no write yet: the batch interval has not passed
    assert keys.get(first.record.id).last_used_at is None

    usage = gateway.authenticator.api_keys.usage
    usage._next_flush = 0.0  # the interval passes
    client.get("/v1/x", headers={"Authorization": f"Bearer {first.secret}"})
    assert len(writes) == 1  # one write carries every key used since the last one
    assert set(writes[0]) == {first.record.id, second.record.id}
    for issued in (first, second):
        assert keys.get(issued.record.id).last_used_at is not None
    client.get("/v1/x", headers={"Authorization": f"Bearer {first.secret}"})
    assert len(writes) == 1
