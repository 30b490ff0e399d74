"""Customers (§12): who a set of keys belongs to, and the unit of placement.

A customer's metadata sits beneath each of its keys' own metadata, so moving a customer to
dedicated infrastructure is one ``update`` (``--meta backend=acme-dedicated``) that every
gateway honours within a second, with no new keys. Disabling a customer refuses all its
keys (``disabled_key``) without revoking any; enabling restores them.

The ids are the operator's own (an account id), 1-64 characters of ``A-Za-z0-9_.:-``, so
they can appear in URLs, logs and headers without escaping. The risk named here: a
secret pasted where an id belongs is never echoed (:func:`envroute.guards.safe_id`).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .audit import Managed, diff
from .errors import CustomerNotFound
from .guards import (
    KeyUsageError,
    check_metadata,
    looks_like_secret,
    merged,
    refuse_secret,
    safe_id,
    since_days,
)
from .stores.base import Change, CustomerRecord, KeyRecord, UsageDay, utcnow_seconds

CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _audited(record: CustomerRecord) -> dict[str, Any]:
    data = record.to_dict()
    data.pop("status")
    data.pop("created_at")
    return data


class CustomerManager(Managed):
    """Create, read, change, disable and enable customers; see the module docstring."""

    def _id(self, customer_id: str) -> str:
        if not CUSTOMER_ID.match(customer_id) or looks_like_secret(customer_id,
                                                                   self.settings):
            raise CustomerNotFound(f"no customer {safe_id(customer_id, self.settings)}")
        return customer_id

    def _changed(self, action: str, record: CustomerRecord,
                 changes: Mapping[str, Any]) -> None:
        self.recorder.changed(Change("customer", record.id), action, record.id, changes,
                              customer_id=record.id)

    def get(self, customer_id: str) -> CustomerRecord:
        return self.store.get_customer(self._id(customer_id))

    def list(self) -> list[CustomerRecord]:
        return self.store.list_customers()

    def keys(self, customer_id: str) -> builtins.list[KeyRecord]:
        return self.store.list_customer_keys(self.get(customer_id).id)

    def usage(self, customer_id: str, *, days: int = 30) -> builtins.list[UsageDay]:
        """Every day with traffic, summed over all the customer's keys."""
        key_ids = [k.id for k in self.keys(customer_id)]
        return self.store.usage(key_ids, since_days(days)) if key_ids else []

    def create(self, customer_id: str, *, name: str = "",
               metadata: Mapping[str, Any] | None = None) -> CustomerRecord:
        if looks_like_secret(customer_id, self.settings):
            # A secret fits the id alphabet: stored as an id it would be shown everywhere.
            raise KeyUsageError(f"{safe_id(customer_id, self.settings)} is a secret, not a "
                                "customer id")
        if not CUSTOMER_ID.match(customer_id):
            raise KeyUsageError(f"{safe_id(customer_id, self.settings)!r} is not a customer "
                                "id: 1-64 characters of A-Za-z0-9_.:-")
        refuse_secret(name, "as a customer's name")
        record = CustomerRecord(id=customer_id, name=name,
                                metadata=check_metadata(metadata or {}, "customer"),
                                created_at=utcnow_seconds())
        self.recorder.prepare()
        stored = self.store.create_customer(record)
        self._changed("customer.created", stored, diff({}, _audited(stored)))
        return stored

    def update(self, customer_id: str, *, name: str | None = None,
               metadata: Mapping[str, Any] | None = None,
               set_meta: Mapping[str, Any] | None = None,
               unset_meta: Iterable[str] = ()) -> CustomerRecord:
        """Change the name and metadata (``metadata`` replaces it whole; ``set_meta`` /
        ``unset_meta`` edit it). Every gateway honours it within about a second."""
        before = self.get(customer_id)
        changes: dict[str, Any] = {}
        unset = list(unset_meta)
        if metadata is not None or set_meta or unset:
            base = metadata if metadata is not None else before.metadata
            changes["metadata"] = check_metadata(merged(base, set_meta, unset), "customer")
        if name is not None:
            refuse_secret(name, "as a customer's name")
            changes["name"] = name
        current = {"metadata": dict(before.metadata), "name": before.name}
        changes = {k: v for k, v in changes.items() if v != current[k]}
        if not changes:  # nothing changes: nothing stored, audited or announced
            return before
        self.recorder.prepare()
        after = self.store.update_customer(before.id, changes)
        self._changed("customer.updated", after, diff(_audited(before), _audited(after)))
        return after

    def disable(self, customer_id: str) -> CustomerRecord:
        return self._set_disabled(customer_id, True)

    def enable(self, customer_id: str) -> CustomerRecord:
        return self._set_disabled(customer_id, False)

    def _set_disabled(self, customer_id: str, disabled: bool) -> CustomerRecord:
        before = self.get(customer_id)
        if (before.disabled_at is not None) == disabled:
            return before
        self.recorder.prepare()
        after = self.store.set_customer_disabled(before.id,
                                                 utcnow_seconds() if disabled else None)
        self._changed("customer.disabled" if disabled else "customer.enabled", after,
                      diff(_audited(before), _audited(after)))
        return after
