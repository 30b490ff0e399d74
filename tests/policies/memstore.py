"""An in-memory key store that counts its queries, for the verifier's and recorder's tests.

It keeps exactly what the verifier relies on (hash -> record, the customer joined in the
same query, fingerprints) and can be told to fail, so the tests can say "no store query"
and "the store was down" without a database. Store-backed tests use the real stores.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from envroute import keys
from envroute.errors import CustomerNotFound, KeyNotFound, StoreUnavailable
from envroute.stores.base import (
    CustomerRecord,
    KeyRecord,
    KeyStore,
    SecretMatch,
    UsageBatch,
    utcnow,
)
from tests.support.apps import SECRET


class MemoryStore(KeyStore):
    url = "memory://"

    def __init__(self, *, join_customer: bool = True) -> None:
        self.join_customer = join_customer
        self.records: dict[str, KeyRecord] = {}
        self.hashes: dict[bytes, tuple[str, str]] = {}  # hash -> (key id, fingerprint)
        self.customers: dict[str, CustomerRecord] = {}
        self.lookups = 0
        self.customer_lookups = 0
        self.batches: list[UsageBatch] = []
        self.rehashed: list[dict[bytes, tuple[bytes, str]]] = []
        self.down = False
        self._lock = threading.Lock()

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("the memory store is down (test)")

    # -- what the tests set up --------------------------------------------------------------

    def add_key(self, environment: str = "sandbox", *, secret: str = SECRET,
                prefix: str = "", customer: str | None = None, **fields: Any) -> str:
        prefix = prefix or ("sk_test_" if environment == "sandbox" else "sk_live_")
        key = keys.generate_secret(prefix)
        record = KeyRecord(id=keys.generate_key_id(), environment=environment, prefix=prefix,
                           last4=key[-4:], created_at=utcnow(), customer_id=customer, **fields)
        self.create(record, keys.hash_key(secret.encode(), key),
                    fingerprint=keys.secret_fingerprint(secret.encode()))
        return key

    def add_customer(self, customer_id: str, **fields: Any) -> CustomerRecord:
        record = CustomerRecord(id=customer_id, created_at=utcnow(), **fields)
        self.customers[customer_id] = record
        return record

    def change_key(self, key_id: str, **fields: Any) -> None:
        self.records[key_id] = replace(self.records[key_id], **fields)

    def change_customer(self, customer_id: str, **fields: Any) -> None:
        self.customers[customer_id] = replace(self.customers[customer_id], **fields)

    # -- KeyStore ---------------------------------------------------------------------------

    def lookup(self, key_hash: bytes) -> SecretMatch | None:
        self._check()
        self.lookups += 1
        found = self.hashes.get(key_hash)
        if found is None:
            return None
        record = self.records[found[0]]
        customer = (self.customers.get(record.customer_id)
                    if record.customer_id and self.join_customer else None)
        return SecretMatch(record, key_hash, customer=customer)

    def get(self, key_id: str) -> KeyRecord:
        try:
            return self.records[key_id]
        except KeyError:
            raise KeyNotFound(key_id) from None

    def list_keys(self) -> list[KeyRecord]:
        return list(self.records.values())

    def create(self, record: KeyRecord, key_hash: bytes, *, fingerprint: str = "") -> None:
        self.records[record.id] = record
        self.hashes[key_hash] = (record.id, fingerprint)

    def revoke(self, key_id: str, at: datetime) -> KeyRecord:
        self.change_key(key_id, revoked_at=at)
        return self.records[key_id]

    def roll(self, key_id: str, key_hash: bytes, last4: str, *, now: datetime,
             retire_at: datetime, fingerprint: str = "") -> KeyRecord:
        raise NotImplementedError

    def record_usage(self, used: Mapping[str, datetime]) -> None:
        self._check()
        self.batches.append(UsageBatch(last_used=dict(used)))

    def get_customer(self, customer_id: str) -> CustomerRecord:
        self._check()
        self.customer_lookups += 1
        try:
            return self.customers[customer_id]
        except KeyError:
            raise CustomerNotFound(customer_id) from None

    def write_usage(self, batch: UsageBatch) -> None:
        self._check()
        with self._lock:
            self.batches.append(batch)

    def rehash(self, pairs: Mapping[bytes, tuple[bytes, str]]) -> None:
        self._check()
        self.rehashed.append(dict(pairs))
        for old, (new, fingerprint) in pairs.items():
            if old in self.hashes:
                self.hashes[new] = (self.hashes.pop(old)[0], fingerprint)

    def secret_fingerprints(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, fingerprint in self.hashes.values():
            counts[fingerprint] = counts.get(fingerprint, 0) + 1
        return counts


    # The rest of KeyStore's interface (abstract since 0.2): the verifier never calls it.
    def _unused(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    update_key = set_key_disabled = create_customer = list_customers = _unused
    update_customer = set_customer_disabled = add_backend = update_backend = _unused
    remove_backend = get_backend = list_backends = usage = append_audit = _unused
    list_audit = _unused


class OldStore(MemoryStore):
    """A store written for 0.1: no daily counts, no re-hashing, no fingerprints."""

    def write_usage(self, batch: UsageBatch) -> None:
        raise NotImplementedError

    def rehash(self, pairs: Mapping[bytes, tuple[bytes, str]]) -> None:
        raise NotImplementedError

    def secret_fingerprints(self) -> dict[str, int]:
        raise NotImplementedError
