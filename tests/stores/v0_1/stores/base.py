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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..settings import frozen_map


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class KeyRecord:
    """A key's public record (contract §3). ``prefix`` + ``last4`` name its current secret."""

    id: str
    environment: str
    prefix: str
    last4: str
    created_at: datetime
    metadata: Mapping[str, Any] = field(default_factory=frozen_map)
    name: str = ""
    scopes: tuple[str, ...] = ()
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def display(self) -> str:
        return f"{self.prefix}…{self.last4}"

    def status(self, now: datetime | None = None) -> str:
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (``keys show --json``, the admin, the API)."""
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat().replace("+00:00", "Z") if moment else None

        return {
            "id": self.id, "environment": self.environment, "name": self.name,
            "metadata": dict(self.metadata), "scopes": list(self.scopes),
            "prefix": self.prefix, "last4": self.last4, "status": self.status(),
            "created_at": iso(self.created_at), "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at), "last_used_at": iso(self.last_used_at),
        }


@dataclass(frozen=True)
class SecretMatch:
    """What a hash lookup finds: the record, and when that particular secret stops working.

    ``secret_expires_at`` is set on a secret that a roll retired; the record's own
    ``expires_at`` applies to every secret of the key.
    """

    record: KeyRecord
    key_hash: bytes
    secret_expires_at: datetime | None = None


class KeyStore(ABC):
    """The interface every key store implements. Implementations must be thread-safe and
    fork-safe: connections are opened lazily, per process (gunicorn forks after import)."""

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
    def create(self, record: KeyRecord, key_hash: bytes) -> None:
        """Store a new record and the hash of its first secret."""

    @abstractmethod
    def revoke(self, key_id: str, at: datetime) -> KeyRecord:
        """Mark the key revoked (idempotent: revoking twice keeps the first time)."""

    @abstractmethod
    def roll(self, key_id: str, key_hash: bytes, last4: str, *, now: datetime,
             retire_at: datetime) -> KeyRecord:
        """Add a new secret to the key; every older secret stops working at ``retire_at``."""

    @abstractmethod
    def record_usage(self, used: Mapping[str, datetime]) -> None:
        """Batch-update ``last_used_at`` (called every few seconds, never per request)."""

    def migrate(self) -> None:  # noqa: B027 - optional: stores that need no schema skip it
        """Create or upgrade the schema; safe to call from several processes at once."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections held by this process."""


class InvalidationSource(ABC):
    """A store that pushes revocations and rolls to every process, within about a second."""

    @abstractmethod
    def subscribe(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(key_id)`` whenever a key changes, from any process or host,
        and ``callback(None)`` (every key) when changes may have been missed, such as
        after the push channel reconnects."""


def dump_metadata(metadata: Mapping[str, Any]) -> str:
    return json.dumps(dict(metadata), separators=(",", ":"), sort_keys=True)


def load_metadata(text: str) -> Mapping[str, Any]:
    return frozen_map(json.loads(text))
