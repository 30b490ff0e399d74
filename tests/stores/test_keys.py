"""The key half of the store contract: every test runs against every store."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from envroute import KeyNotFound, StoreUnavailable
from envroute.errors import CustomerNotFound
from envroute.stores import KeyStore

from .records import HASH, NOW, OTHER, THIRD, customer, key


def test_create_then_lookup_get_and_list(store: KeyStore) -> None:
    store.create(key(scopes=("charges:read", "refunds:write"),
                     expires_at=NOW + timedelta(days=1)), HASH)
    match = store.lookup(HASH)
    assert match is not None
    assert (match.key_hash, match.secret_expires_at, match.customer) == (HASH, None, None)
    found = match.record
    assert found == store.get("key_one")
    assert dict(found.metadata) == {"customer": "acme", "tier": "free", "n": 3}
    assert found.scopes == ("charges:read", "refunds:write")
    assert found.created_at == NOW and found.created_at.utcoffset() == timedelta(0)
    assert found.expires_at == NOW + timedelta(days=1)
    assert (found.revoked_at, found.last_used_at, found.disabled_at) == (None, None, None)
    assert found.customer_id is None and found.status() == "active"
    assert found.to_dict()["scopes"] == ["charges:read", "refunds:write"]
    assert found.to_dict()["created_at"] == "2030-01-02T03:04:05.123456Z"
    assert [r.id for r in store.list_keys()] == ["key_one"]


@pytest.mark.parametrize("operation", [
    pytest.param(lambda s: s.get("key_x"), id="get"),
    pytest.param(lambda s: s.revoke("key_x", NOW), id="revoke"),
    pytest.param(lambda s: s.roll("key_x", OTHER, "wxyz", now=NOW, retire_at=NOW), id="roll"),
    pytest.param(lambda s: s.update_key("key_x", {"name": "n"}), id="update"),
    pytest.param(lambda s: s.update_key("key_x", {}), id="update-nothing"),
    pytest.param(lambda s: s.set_key_disabled("key_x", NOW), id="disable"),
    pytest.param(lambda s: s.set_key_disabled("key_x", None), id="enable"),
])
def test_unknown_key_ids(store: KeyStore, operation: Callable[[KeyStore], Any]) -> None:
    with pytest.raises(KeyNotFound):
        operation(store)
    assert store.lookup(OTHER) is None


def test_list_is_oldest_first(store: KeyStore) -> None:
    store.create(key("key_b", created_at=NOW + timedelta(seconds=1)), OTHER)
    store.create(key("key_a"), HASH)
    assert [r.id for r in store.list_keys()] == ["key_a", "key_b"]


def test_revoke_is_idempotent_and_keeps_the_first_time(store: KeyStore) -> None:
    store.create(key(), HASH)
    first = store.revoke("key_one", NOW)
    again = store.revoke("key_one", NOW + timedelta(hours=1))
    assert first.revoked_at == again.revoked_at == NOW
    assert again.status() == "revoked"
    match = store.lookup(HASH)
    assert match is not None and match.record.revoked_at == NOW


def test_roll_retires_old_secrets_and_adds_a_new_one(store: KeyStore) -> None:
    store.create(key(), HASH)
    retire = NOW + timedelta(hours=24)
    rolled = store.roll("key_one", OTHER, "wxyz", now=NOW, retire_at=retire)
    assert rolled.last4 == "wxyz"
    old, new = store.lookup(HASH), store.lookup(OTHER)
    assert old is not None and old.secret_expires_at == retire
    assert new is not None and new.secret_expires_at is None
    assert new.record.id == old.record.id == "key_one"
    # §3: rolling again leaves the earlier old secret's expiry as it was; only the secret
    # being replaced takes the new roll's expiry, sooner or later than the earlier one
    store.roll("key_one", THIRD, "qrst", now=NOW, retire_at=NOW)
    earlier, replaced = store.lookup(HASH), store.lookup(OTHER)
    assert earlier is not None and earlier.secret_expires_at == retire
    assert replaced is not None and replaced.secret_expires_at == NOW
    store.roll("key_one", b"\x04" * 32, "mnop", now=NOW, retire_at=NOW + timedelta(days=9))
    assert [m.secret_expires_at for m in map(store.lookup, (HASH, OTHER, THIRD)) if m] == [
        retire, NOW, NOW + timedelta(days=9)]


def test_a_hash_belongs_to_one_key(store: KeyStore) -> None:
    store.create(key(), HASH)
    with pytest.raises(StoreUnavailable):
        store.create(key("key_two"), HASH)
    assert [r.id for r in store.list_keys()] == ["key_one"]  # nothing half-written


def test_a_key_of_a_customer_carries_it_into_lookup(store: KeyStore) -> None:
    store.create_customer(customer())
    store.create(key(customer_id="acme"), HASH)
    match = store.lookup(HASH)
    assert match is not None and match.record.customer_id == "acme"
    assert match.customer == store.get_customer("acme")
    assert dict(match.customer.metadata) == {"tier": "pro", "backend": "shared"}
    assert [k.id for k in store.list_customer_keys("acme")] == ["key_one"]
    assert store.list_customer_keys("other") == []


def test_a_key_for_an_unknown_customer_is_refused_and_nothing_is_created(
        store: KeyStore) -> None:
    with pytest.raises(CustomerNotFound):
        store.create(key(customer_id="nobody"), HASH)
    assert store.list_keys() == [] and store.lookup(HASH) is None


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({"metadata": {"tier": "pro"}}, {"metadata": {"tier": "pro"}}, id="metadata"),
    pytest.param({"name": "renamed"}, {"name": "renamed"}, id="name"),
    pytest.param({"expires_at": NOW + timedelta(days=7)},
                 {"expires_at": NOW + timedelta(days=7)}, id="expiry"),
    pytest.param({"expires_at": None}, {"expires_at": None}, id="no-expiry"),
    pytest.param({}, {}, id="nothing"),
])
def test_update_key_changes_only_what_is_given(
        store: KeyStore, changes: dict[str, Any], expected: dict[str, Any]) -> None:
    before = key(expires_at=NOW + timedelta(days=1))
    store.create(before, HASH)
    updated = store.update_key("key_one", changes)
    want = {"metadata": dict(before.metadata), "name": before.name,
            "expires_at": before.expires_at, **expected}
    assert {"metadata": dict(updated.metadata), "name": updated.name,
            "expires_at": updated.expires_at} == want
    assert updated == store.get("key_one")
    assert (updated.id, updated.environment, updated.prefix, updated.last4) == (
        "key_one", "sandbox", "sk_test_", "abcd")


def test_disable_and_enable(store: KeyStore) -> None:
    store.create(key(), HASH)
    disabled = store.set_key_disabled("key_one", NOW)
    assert disabled.disabled_at == NOW and disabled.status() == "disabled"
    again = store.set_key_disabled("key_one", NOW + timedelta(hours=1))
    assert again.disabled_at == NOW  # the first time stays
    match = store.lookup(HASH)
    assert match is not None and match.record.status() == "disabled"
    enabled = store.set_key_disabled("key_one", None)
    assert enabled.disabled_at is None and enabled.status() == "active"


def test_last_used_only_moves_forward(store: KeyStore) -> None:
    store.create(key(), HASH)
    store.record_usage({})
    store.record_usage({"key_one": NOW, "key_gone": NOW})
    store.record_usage({"key_one": NOW - timedelta(minutes=5)})  # a late, older batch
    assert store.get("key_one").last_used_at == NOW


def test_find_key_by_hash(store: KeyStore) -> None:
    store.create(key(), HASH)
    found = store.find_key_by_hash(HASH)
    assert found is not None and found.id == "key_one"
    assert store.find_key_by_hash(OTHER) is None


def test_another_process_sees_every_write(store: KeyStore, other_process: KeyStore) -> None:
    store.create(key(), HASH)
    store.revoke("key_one", NOW)
    assert other_process.get("key_one").revoked_at == NOW


def test_stores_starting_together_migrate_once(
        open_stores: Callable[[], KeyStore]) -> None:
    stores = [open_stores() for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda store: store.migrate(), stores))
    stores[0].create(key(), HASH)
    assert all(store.get("key_one").id == "key_one" for store in stores)


def test_retiring_secrets_are_those_a_roll_retired_within_the_window(store: KeyStore) -> None:
    store.create(key("key_a"), HASH)
    store.create(key("key_b"), OTHER)
    soon, later = NOW + timedelta(hours=1), NOW + timedelta(days=3)
    store.roll("key_a", b"\x0a" * 32, "aaaa", now=NOW, retire_at=soon)
    store.roll("key_b", b"\x0b" * 32, "bbbb", now=NOW, retire_at=later)
    assert store.retiring_secrets(NOW, NOW + timedelta(days=1)) == [("key_a", soon)]
    assert store.retiring_secrets(NOW, NOW + timedelta(days=7)) == [("key_a", soon),
                                                                    ("key_b", later)]
    assert store.retiring_secrets(soon, NOW + timedelta(days=1)) == []  # already retired
