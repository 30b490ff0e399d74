"""Verification, usage and secret rotation against the real stores (SQLite and PostgreSQL).

The in-memory tests (``test_verification.py``, ``test_usage.py``, ``test_secrets.py``) pin
the rules exactly; these show the stores and the verifier agree on them end to end.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from envroute import EnvRouter, keys
from envroute.credentials import Credential
from envroute.errors import StoreUnavailable
from envroute.problems import Problem
from envroute.secrets import UnknownStoreSecret, verify_store_secrets
from envroute.stores import KeyStore, open_store
from envroute.stores import sqlite as sqlite_store
from envroute.stores.base import Change, CustomerRecord, KeyRecord, UsageBatch, UsageDay, utcnow
from envroute.usage import UsageRecorder
from tests.support.apps import SECRET

from .conftest import GatewayFactory, config

OLD = "old-store-secret-" + "o" * 32


def today() -> Any:
    return datetime.now(UTC).date()


def add_key(store: KeyStore, *, secret: str = SECRET, environment: str = "sandbox",
            customer: str | None = None, metadata: dict[str, Any] | None = None) -> tuple[str, str]:
    """A key made as KeyManager makes it (hash and fingerprint under ``secret``)."""
    prefix = "sk_test_" if environment == "sandbox" else "sk_live_"
    key = keys.generate_secret(prefix)
    record = KeyRecord(id=keys.generate_key_id(), environment=environment, prefix=prefix,
                       last4=key[-4:], created_at=utcnow().replace(microsecond=0),
                       customer_id=customer, metadata=metadata or {})
    store.create(record, keys.hash_key(secret.encode(), key),
                 fingerprint=keys.secret_fingerprint(secret.encode()))
    return key, record.id


def code_of(call: Callable[[], object]) -> str:
    with pytest.raises(Problem) as caught:
        call()
    return caught.value.code


@pytest.fixture
def gateway(make_gateway: GatewayFactory, any_store_url: str) -> EnvRouter:
    return make_gateway(config(any_store_url))


def test_effective_metadata_and_disabling(gateway: EnvRouter) -> None:
    store, auth = gateway.store, gateway.authenticator
    store.create_customer(CustomerRecord(id="acme", created_at=utcnow(),
                                         metadata={"tier": "gold", "backend": "shared"}))
    key, key_id = add_key(store, customer="acme", metadata={"backend": "dedicated"})

    def authenticate() -> Any:
        return auth.authenticate(Credential(key, "bearer"))

    identity = authenticate()
    assert identity.customer_id == "acme"
    assert dict(identity.metadata) == {"tier": "gold", "backend": "dedicated"}

    steps: list[tuple[Callable[[], object], Change, str | None]] = [
        (lambda: store.set_key_disabled(key_id, utcnow()), Change("key", key_id),
         "disabled_key"),
        (lambda: store.set_key_disabled(key_id, None), Change("key", key_id), None),
        (lambda: store.set_customer_disabled("acme", utcnow()), Change("customer", "acme"),
         "disabled_key"),
        (lambda: store.set_customer_disabled("acme", None), Change("all"), None),
        (lambda: store.update_customer("acme", {"metadata": {"tier": "platinum"}}),
         Change("customer", "acme"), None),
        (lambda: store.revoke(key_id, utcnow()), Change("key", key_id), "revoked_key"),
        (lambda: store.set_key_disabled(key_id, utcnow()), Change("key", key_id),
         "revoked_key"),
    ]
    for change_store, change, code in steps:
        change_store()
        auth.on_change(change)
        if code is None:
            assert authenticate().customer_id == "acme"
        else:
            assert code_of(authenticate) == code
    assert store.get_customer("acme").metadata["tier"] == "platinum"


def test_usage_is_counted_per_day_and_adds_up_across_gateways(
        make_gateway: GatewayFactory, any_store_url: str) -> None:
    settings = config(any_store_url)
    settings["routes"] = settings["routes"][:1]  # production keys: 403 no_route
    gateways = [make_gateway(settings), make_gateway(settings)]
    store = gateways[0].store
    sandbox, sandbox_id = add_key(store)
    production, production_id = add_key(store, environment="production")
    for gateway in gateways:
        client = Client(gateway)
        for secret, times in ((sandbox, 3), (production, 2)):
            for _ in range(times):
                client.get("/v1/x", headers={"Authorization": f"Bearer {secret}"})
        gateway.authenticator.close()
    assert store.usage([sandbox_id], today()) == [UsageDay(today(), 6, 0)]
    assert store.usage([production_id], today()) == [UsageDay(today(), 4, 4)]
    assert store.get(sandbox_id).last_used_at is not None


def test_a_batch_the_store_refused_is_written_once_it_is_back(
        gateway: EnvRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    store, auth = gateway.store, gateway.authenticator
    key, key_id = add_key(store)
    real = store.write_usage
    outage = [True]

    def flaky(batch: UsageBatch) -> None:
        if outage[0]:
            raise StoreUnavailable("the store is down (test)")
        real(batch)

    monkeypatch.setattr(store, "write_usage", flaky)
    client = Client(gateway)
    client.get("/v1/x", headers={"X-API-Key": key})
    auth.flush()
    client.get("/v1/x", headers={"X-API-Key": key})
    auth.flush()
    assert store.usage([key_id], today()) == []
    outage[0] = False
    auth.flush()
    assert store.usage([key_id], today()) == [UsageDay(today(), 2, 0)]
    auth.close()


def test_a_slow_flush_never_holds_a_request(gateway: EnvRouter,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    store, auth = gateway.store, gateway.authenticator
    key, key_id = add_key(store)
    entered, release = threading.Event(), threading.Event()
    real = store.write_usage

    def stuck(batch: UsageBatch) -> None:
        entered.set()
        release.wait(60)
        real(batch)

    monkeypatch.setattr(store, "write_usage", stuck)
    client = Client(gateway)
    assert client.get("/v1/x", headers={"X-API-Key": key}).status_code == 200
    flushing = threading.Thread(target=auth.flush)
    flushing.start()
    assert entered.wait(30)  # the flush now waits on the store (a write lock, a slow disk)
    for _ in range(5):  # requests go on meanwhile
        assert client.get("/v1/x", headers={"X-API-Key": key}).status_code == 200
    release.set()
    flushing.join(30)
    auth.close()
    assert store.usage([key_id], today()) == [UsageDay(today(), 6, 0)]


def test_rotating_the_secret(make_gateway: GatewayFactory, any_store_url: str) -> None:
    old_gateway = make_gateway(config(any_store_url, secret=OLD))
    store = old_gateway.store
    made = [add_key(store, secret=OLD) for _ in range(3)]
    current_key, _ = add_key(store)
    settings = config(any_store_url, previous_secrets=[OLD])
    rotating = make_gateway(settings)
    assert verify_store_secrets(rotating.store, rotating.settings) == 3
    with pytest.raises(UnknownStoreSecret, match="3 key secrets"):
        verify_store_secrets(store, make_gateway(config(any_store_url)).settings)
    client = Client(rotating)
    for key, _ in [*made, (current_key, "")]:
        assert client.get("/v1/x", headers={"X-API-Key": key}).status_code == 200
    rotating.authenticator.flush()  # the timer's tick: one batch of re-hashes
    assert verify_store_secrets(rotating.store, rotating.settings) == 0
    rotated = make_gateway(config(any_store_url))  # the old secret is gone now
    assert verify_store_secrets(rotated.store, rotated.settings) == 0
    for key, _ in made:
        assert Client(rotated).get("/v1/x", headers={"X-API-Key": key}).status_code == 200
    for gateway in (old_gateway, rotating, rotated):
        gateway.authenticator.close()


def test_workers_writing_the_same_keys_at_once_lose_nothing(any_store_url: str) -> None:
    """Several workers flush batches over the same rows at the same moment (PostgreSQL
    deadlocked on 0.1 when rows were updated in different orders)."""
    stores = [open_store(any_store_url) for _ in range(4)]
    key_ids = [add_key(stores[0])[1] for _ in range(8)]
    recorders = [UsageRecorder(store) for store in stores]
    failures: list[str] = []
    start = threading.Barrier(len(recorders))

    def work(n: int, recorder: UsageRecorder) -> None:
        order = key_ids if n % 2 else list(reversed(key_ids))  # counted in any order ...
        start.wait(30)
        for _ in range(10):
            for key_id in order:
                recorder.record(key_id, False)
            if not recorder.flush():  # ... written in the batch's stable order
                failures.append(f"worker {n}")
        if not recorder.flush():
            failures.append(f"worker {n} at the end")

    threads = [threading.Thread(target=work, args=(n, r)) for n, r in enumerate(recorders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    try:
        assert failures == []
        for key_id in key_ids:
            assert stores[0].usage([key_id], today()) == [UsageDay(today(), 40, 0)]
    finally:
        for store in stores:
            store.close()


def test_a_locked_sqlite_store_takes_the_batch_on_the_first_flush_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_MS", 50)
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    store = open_store(url)
    _, key_id = add_key(store)
    recorder = UsageRecorder(store)
    recorder.record(key_id, False)
    blocker = sqlite3.connect(tmp_path / "keys.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        assert recorder.flush() is False
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    recorder.record(key_id, True)
    assert recorder.flush() is True  # the first try once the store is writable again
    assert store.usage([key_id], today()) == [UsageDay(today(), 2, 1)]
    store.close()
