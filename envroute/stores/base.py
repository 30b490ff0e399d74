"""The key store interface: what a SQLite, PostgreSQL or Django ORM store implements.

A store keeps key records and the keyed hashes of their secrets, never a secret. The
gateway asks it one question on the hot path, :meth:`KeyStore.lookup` by hash, and only
on a cache miss; everything else is the key lifecycle (CLI, admin). Every failure to reach
or read the store is raised as :class:`~envroute.errors.StoreUnavailable`, so the gateway
can fail closed with 503 whatever the database.

Optional features are mixins, as in ``limits``' stores: a store that can push
invalidations to every process (PostgreSQL ``LISTEN/NOTIFY``, Redis pub/sub) implements
:class:`InvalidationSource`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from ..settings import frozen_map
from .records import (
    AuditRecord as AuditRecord,
)
from .records import (
    BackendRecord as BackendRecord,
)
from .records import (
    Change as Change,
)
from .records import (
    ChangeKind as ChangeKind,
)
from .records import (
    CustomerRecord as CustomerRecord,
)
from .records import (
    KeyRecord as KeyRecord,
)
from .records import (
    SecretMatch as SecretMatch,
)
from .records import (
    UsageBatch as UsageBatch,
)
from .records import (
    UsageDay as UsageDay,
)
from .records import (
    iso as iso,
)
from .records import (
    utcnow as utcnow,
)
from .records import (
    utcnow_seconds as utcnow_seconds,
)


class KeyStore(ABC):
    """The interface every key store implements. Implementations must be thread-safe and
    fork-safe: connections are opened lazily, per process (gunicorn forks after import).

    Every abstract method is required (0.2 added customers, stored backends, usage, audit
    and secret fingerprints); a store of an integration's own implements them all.
    """

    url: str = ""

    @abstractmethod
    def lookup(self, key_hash: bytes) -> SecretMatch | None:
        """The record whose secret hashes to ``key_hash``, or None. The hot path's only call."""

    @abstractmethod
    def get(self, key_id: str) -> KeyRecord:
        """The record with this id; :class:`~envroute.errors.KeyNotFound` if none."""

    @abstractmethod
    def list_keys(self) -> list[KeyRecord]:
        """Every record, oldest first."""

    @abstractmethod
    def create(self, record: KeyRecord, key_hash: bytes, *, fingerprint: str = "") -> None:
        """Store a new record and the hash of its first secret, made under the store
        secret whose :func:`~envroute.keys.secret_fingerprint` is ``fingerprint``.
        ``record.customer_id``, when set, must name a stored customer
        (:class:`~envroute.errors.CustomerNotFound` otherwise, nothing created)."""

    @abstractmethod
    def revoke(self, key_id: str, at: datetime) -> KeyRecord:
        """Mark the key revoked (idempotent: revoking twice keeps the first time)."""

    @abstractmethod
    def roll(self, key_id: str, key_hash: bytes, last4: str, *, now: datetime,
             retire_at: datetime, fingerprint: str = "") -> KeyRecord:
        """Add a new secret to the key; the secret it replaces (the one with no expiry)
        stops working at ``retire_at``. An earlier roll's secret still retiring keeps its
        own time, sooner or later than ``retire_at`` (§3: rolling again never changes it)."""

    def record_usage(self, used: Mapping[str, datetime]) -> None:
        """Batch-update ``last_used_at`` (0.1's call; :meth:`write_usage` does it now)."""
        self.write_usage(UsageBatch(last_used=used))

    def migrate(self) -> None:  # noqa: B027 - optional: stores that need no schema skip it
        """Create or upgrade the schema; safe to call from several processes at once."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections held by this process."""

    # -- 0.2: keys that change ------------------------------------------------------------

    @abstractmethod
    def update_key(self, key_id: str, changes: Mapping[str, Any]) -> KeyRecord:
        """Change a key's own ``metadata`` (the whole new mapping), ``name`` or
        ``expires_at`` (None: no expiry); only the fields present in ``changes``."""

    @abstractmethod
    def set_key_disabled(self, key_id: str, at: datetime | None) -> KeyRecord:
        """Disable the key at ``at``, or enable it again with None."""

    def find_key_by_hash(self, key_hash: bytes) -> KeyRecord | None:
        """The key one of whose secrets hashes to ``key_hash`` (``keys revoke --secret``)."""
        match = self.lookup(key_hash)
        return match.record if match is not None else None

    def retiring_secrets(self, now: datetime, until: datetime) -> list[tuple[str, datetime]]:
        """(key id, expires_at) of each secret a roll retired that still works at ``now``
        and stops working at or before ``until`` (``keys expiring``, §16)."""
        raise NotImplementedError

    # -- 0.2: customers (§12) -------------------------------------------------------------

    @abstractmethod
    def create_customer(self, record: CustomerRecord) -> CustomerRecord:
        """Store a new customer; :class:`~envroute.errors.AlreadyExists` if the id is taken."""

    @abstractmethod
    def get_customer(self, customer_id: str) -> CustomerRecord:
        """:class:`~envroute.errors.CustomerNotFound` if none."""

    @abstractmethod
    def list_customers(self) -> list[CustomerRecord]:
        """Every customer, oldest first."""

    @abstractmethod
    def update_customer(self, customer_id: str, changes: Mapping[str, Any]) -> CustomerRecord:
        """Change ``name`` and/or ``metadata`` (the whole new mapping)."""

    @abstractmethod
    def set_customer_disabled(self, customer_id: str, at: datetime | None) -> CustomerRecord:
        """Disable the customer at ``at`` (its keys answer ``disabled_key``), or enable it."""

    def list_customer_keys(self, customer_id: str) -> list[KeyRecord]:
        return [key for key in self.list_keys() if key.customer_id == customer_id]

    # -- 0.2: stored backends (§13) -------------------------------------------------------

    @abstractmethod
    def add_backend(self, record: BackendRecord) -> BackendRecord:
        """:class:`~envroute.errors.AlreadyExists` if the name is taken."""

    @abstractmethod
    def update_backend(self, record: BackendRecord) -> BackendRecord:
        """Replace the stored fields of ``record.name``; BackendNotFound if none."""

    @abstractmethod
    def remove_backend(self, name: str) -> BackendRecord:
        """Remove and return it; :class:`~envroute.errors.BackendNotFound` if none."""

    @abstractmethod
    def get_backend(self, name: str) -> BackendRecord:
        """:class:`~envroute.errors.BackendNotFound` if none."""

    @abstractmethod
    def list_backends(self) -> list[BackendRecord]:
        """Every stored backend, by name. Gateways load this once and again on a
        ``Change("backend")`` or ``Change("all")``, never per request."""

    # -- 0.2: usage and audit (§16) -------------------------------------------------------

    @abstractmethod
    def write_usage(self, batch: UsageBatch) -> None:
        """Write a batch: ``last_used_at`` forward only, daily counts added. Rows are
        written in a stable order (no deadlock between workers). Never per request."""

    @abstractmethod
    def usage(self, key_ids: Sequence[str], since: date) -> list[UsageDay]:
        """Requests and errors per UTC day since ``since``, summed over ``key_ids``,
        only days with traffic, oldest first."""

    @abstractmethod
    def append_audit(self, record: AuditRecord) -> None:
        """Store one audit record (the store assigns its ``seq``)."""

    @abstractmethod
    def list_audit(self, *, key_id: str | None = None, customer_id: str | None = None,
                   backend: str | None = None,
                   since: datetime | None = None) -> list[AuditRecord]:
        """Newest first (by ``seq``). ``customer_id`` includes its keys' records."""

    # -- 0.2: secret rotation (§3) --------------------------------------------------------

    @abstractmethod
    def rehash(self, pairs: Mapping[bytes, tuple[bytes, str]]) -> None:
        """Replace stored hashes: old hash -> (new hash, fingerprint of the secret it was
        made under). Batched by the verifier, never per request."""

    @abstractmethod
    def secret_fingerprints(self) -> dict[str, int]:
        """Fingerprint of each secret the store's key hashes were made under -> how many
        key secrets (still usable) were made under it."""


class InvalidationSource(ABC):
    """A store that pushes changes to every process, within about a second (§11)."""

    @abstractmethod
    def subscribe(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback(change)`` whenever a key, customer or stored backend changes,
        from any process (or host, for PostgreSQL), and ``callback(Change("all"))`` when
        changes may have been missed, such as after the push channel reconnects."""


def dump_metadata(metadata: Mapping[str, Any]) -> str:
    return json.dumps(dict(metadata), separators=(",", ":"), sort_keys=True)


def load_metadata(text: str) -> Mapping[str, Any]:
    return frozen_map(json.loads(text))
