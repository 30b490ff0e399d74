"""One behaviour for every key store: each test runs against SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from envroute import KeyNotFound
from envroute.stores import KeyRecord, KeyStore, open_store

NOW = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def record(key_id: str = "key_one", **changes: object) -> KeyRecord:
    values: dict[str, object] = {
        "id": key_id, "environment": "sandbox", "prefix": "sk_test_", "last4": "abcd",
        "created_at": NOW, "metadata": {"customer": "acme", "tier": "free", "n": 3},
        "name": "ci", "scopes": (),
    }
    values.update(changes)
    return KeyRecord(**values)  # type: ignore[arg-type]


HASH = b"\x01" * 32
OTHER = b"\x02" * 32


def test_create_then_lookup_get_and_list(key_store: KeyStore) -> None:
    key_store.create(record(scopes=("charges:read", "refunds:write"),
                            expires_at=NOW + timedelta(days=1)), HASH)
    match = key_store.lookup(HASH)
    assert match is not None
    assert match.key_hash == HASH
    assert match.secret_expires_at is None
    found = match.record
    assert found == key_store.get("key_one")
    assert dict(found.metadata) == {"customer": "acme", "tier": "free", "n": 3}
    assert found.scopes == ("charges:read", "refunds:write")
    assert found.created_at == NOW
    assert found.expires_at == NOW + timedelta(days=1)
    assert (found.revoked_at, found.last_used_at) == (None, None)
    assert found.to_dict()["scopes"] == ["charges:read", "refunds:write"]
    assert [r.id for r in key_store.list_keys()] == ["key_one"]


def test_unknown_hash_and_id(key_store: KeyStore) -> None:
    assert key_store.lookup(OTHER) is None
    with pytest.raises(KeyNotFound):
        key_store.get("key_missing")
    with pytest.raises(KeyNotFound):
        key_store.revoke("key_missing", NOW)
    with pytest.raises(KeyNotFound):
        key_store.roll("key_missing", OTHER, "wxyz", now=NOW, retire_at=NOW)


def test_list_is_oldest_first(key_store: KeyStore) -> None:
    key_store.create(record("key_b", created_at=NOW + timedelta(seconds=1)), OTHER)
    key_store.create(record("key_a"), HASH)
    assert [r.id for r in key_store.list_keys()] == ["key_a", "key_b"]


def test_revoke_is_idempotent_and_keeps_the_first_time(key_store: KeyStore) -> None:
    key_store.create(record(), HASH)
    first = key_store.revoke("key_one", NOW)
    again = key_store.revoke("key_one", NOW + timedelta(hours=1))
    assert first.revoked_at == again.revoked_at == NOW
    assert again.status() == "revoked"
    match = key_store.lookup(HASH)
    assert match is not None and match.record.revoked_at == NOW


def test_roll_retires_old_secrets_and_adds_a_new_one(key_store: KeyStore) -> None:
    key_store.create(record(), HASH)
    retire = NOW + timedelta(hours=24)
    rolled = key_store.roll("key_one", OTHER, "wxyz", now=NOW, retire_at=retire)
    assert rolled.last4 == "wxyz"
    old, new = key_store.lookup(HASH), key_store.lookup(OTHER)
    assert old is not None and old.secret_expires_at == retire
    assert new is not None and new.secret_expires_at is None
    assert new.record.id == old.record.id == "key_one"
    # a second roll may only bring retirement forward, never postpone it
    key_store.roll("key_one", b"\x03" * 32, "qrst", now=NOW, retire_at=NOW)
    earlier = key_store.lookup(HASH)
    assert earlier is not None and earlier.secret_expires_at == NOW


def test_record_usage_keeps_the_latest(key_store: KeyStore) -> None:
    key_store.create(record(), HASH)
    key_store.record_usage({})
    key_store.record_usage({"key_one": NOW, "key_gone": NOW})
    key_store.record_usage({"key_one": NOW - timedelta(minutes=5)})  # a late, older batch
    assert key_store.get("key_one").last_used_at == NOW


def test_a_hash_belongs_to_one_key(key_store: KeyStore) -> None:
    from envroute import StoreUnavailable

    key_store.create(record(), HASH)
    with pytest.raises(StoreUnavailable):
        key_store.create(record("key_two"), HASH)
    assert [r.id for r in key_store.list_keys()] == ["key_one"]  # nothing half-written


def test_processes_starting_together_migrate_once(any_store_url: str) -> None:
    stores = [open_store(any_store_url) for _ in range(6)]
    try:
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda store: store.migrate(), stores))
        versions = {store.schema_version() for store in stores}  # type: ignore[attr-defined]
        assert versions == {1}
        stores[0].create(record(), HASH)
        assert all(store.get("key_one").id == "key_one" for store in stores)
    finally:
        for store in stores:
            store.close()
