"""Usage, audit and secret fingerprints in the store contract (§16, §3): every store."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from envroute.stores import AuditRecord, KeyStore, UsageBatch, UsageDay
from envroute.stores.base import utcnow

from .records import HASH, NOW, OTHER, THIRD, customer, key

DAY = date(2030, 1, 2)


def test_usage_counts_add_up_across_batches_and_keys(store: KeyStore) -> None:
    store.create(key("key_a"), HASH)
    store.create(key("key_b"), OTHER)
    store.write_usage(UsageBatch())
    store.write_usage(UsageBatch(counts={("key_a", DAY): (3, 1),
                                         ("key_b", DAY): (2, 0),
                                         ("key_a", DAY + timedelta(days=1)): (1, 1)}))
    store.write_usage(UsageBatch(counts={("key_a", DAY): (4, 2),  # another worker's
                                         ("key_gone", DAY): (9, 9)}))
    assert store.usage(["key_a"], DAY) == [UsageDay(DAY, 7, 3),
                                           UsageDay(DAY + timedelta(days=1), 1, 1)]
    assert store.usage(["key_a", "key_b"], DAY) == [UsageDay(DAY, 9, 3),
                                                    UsageDay(DAY + timedelta(days=1), 1, 1)]
    assert store.usage(["key_a"], DAY + timedelta(days=1)) == [
        UsageDay(DAY + timedelta(days=1), 1, 1)]
    assert store.usage(["key_gone"], DAY) == [] and store.usage([], DAY) == []


def test_a_batch_moves_last_used_forward_only(store: KeyStore) -> None:
    store.create(key("key_a"), HASH)
    store.create(key("key_b"), OTHER)
    store.write_usage(UsageBatch(last_used={"key_b": NOW, "key_a": NOW}))
    store.write_usage(UsageBatch(last_used={"key_a": NOW - timedelta(seconds=1),
                                            "key_b": NOW + timedelta(seconds=1)}))
    used = {k.id: k.last_used_at for k in store.list_keys()}
    assert used == {"key_a": NOW, "key_b": NOW + timedelta(seconds=1)}


def audit(action: str, target: str, *, customer_id: str | None = None,
          seconds: int = 0) -> AuditRecord:
    return AuditRecord(at=NOW + timedelta(seconds=seconds), actor="ops", action=action,
                       target=target, changes={"name": ["a", "b"]}, customer_id=customer_id)


@pytest.fixture
def audited(store: KeyStore) -> KeyStore:
    for record in [audit("customer.created", "acme", customer_id="acme"),
                   audit("key.created", "key_1", customer_id="acme"),
                   audit("key.created", "key_2"),
                   audit("backend.added", "dedicated-1", seconds=1),
                   audit("key.revoked", "key_1", customer_id="acme", seconds=1),
                   audit("customer.updated", "acme", customer_id="acme", seconds=2)]:
        store.append_audit(record)
    return store


@pytest.mark.parametrize(("filters", "expected"), [
    pytest.param({}, ["customer.updated acme", "key.revoked key_1", "backend.added dedicated-1",
                      "key.created key_2", "key.created key_1", "customer.created acme"],
                 id="all-newest-first"),
    pytest.param({"key_id": "key_1"}, ["key.revoked key_1", "key.created key_1"], id="key"),
    pytest.param({"customer_id": "acme"}, ["customer.updated acme", "key.revoked key_1",
                                           "key.created key_1", "customer.created acme"],
                 id="customer-with-its-keys"),
    pytest.param({"backend": "dedicated-1"}, ["backend.added dedicated-1"], id="backend"),
    pytest.param({"since": NOW + timedelta(seconds=1)},
                 ["customer.updated acme", "key.revoked key_1", "backend.added dedicated-1"],
                 id="since"),
    pytest.param({"key_id": "acme"}, [], id="a-customer-is-not-a-key"),
])
def test_list_audit(audited: KeyStore, filters: dict[str, object],
                    expected: list[str]) -> None:
    found = audited.list_audit(**filters)  # type: ignore[arg-type]
    assert [f"{r.action} {r.target}" for r in found] == expected
    assert [r.seq for r in found] == sorted((r.seq for r in found), reverse=True)


def test_an_audit_record_keeps_its_fields(store: KeyStore) -> None:
    store.append_audit(audit("key.updated", "key_1", customer_id="acme"))
    (found,) = store.list_audit()
    assert found.to_dict() == {"at": "2030-01-02T03:04:05.123456Z", "actor": "ops",
                               "action": "key.updated", "target": "key_1",
                               "changes": {"name": ["a", "b"]}, "customer_id": "acme"}
    assert found.seq > 0


def test_fingerprints_count_usable_secrets_and_rehash_moves_them(store: KeyStore) -> None:
    store.create_customer(customer())
    store.create(key("key_a"), HASH, fingerprint="old")
    store.create(key("key_b"), OTHER, fingerprint="old")
    store.create(key("key_c"), THIRD, fingerprint="new")
    store.revoke("key_c", NOW)  # a revoked key's secrets no longer count
    assert store.secret_fingerprints() == {"old": 2}
    new_hash = b"\x09" * 32
    store.rehash({HASH: (new_hash, "new"), b"\x07" * 32: (b"\x08" * 32, "new")})
    assert store.secret_fingerprints() == {"old": 1, "new": 1}
    assert store.lookup(HASH) is None
    match = store.lookup(new_hash)
    assert match is not None and match.record.id == "key_a"
    store.rehash({})


def test_a_retired_secret_no_longer_counts(store: KeyStore) -> None:
    store.create(key(), HASH, fingerprint="old")
    past = utcnow() - timedelta(seconds=1)
    store.roll("key_one", OTHER, "wxyz", now=past, retire_at=past, fingerprint="new")
    assert store.secret_fingerprints() == {"new": 1}
