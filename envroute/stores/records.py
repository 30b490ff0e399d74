"""The records a key store keeps and returns (contract §3, §12, §13, §16), and the
changes it pushes (§11). Plain frozen dataclasses, no I/O: every store, the managers, the
CLI and the admin share them, and none of them ever holds a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any, Literal

from ..settings import frozen_map


def utcnow() -> datetime:
    return datetime.now(UTC)


def utcnow_seconds() -> datetime:
    """Now in UTC, to the whole second: every moment a manager writes into a record
    (created, updated, expires, revoked, disabled, a roll and its old secret's expiry), so
    a record's times read alike in every store and in every ``--json``. Only
    ``last_used_at`` (the request path's own clock) and the audit's ``at`` keep
    microseconds."""
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime | None) -> str | None:
    """A UTC moment as the contract's JSON shows it: ISO 8601 with ``Z``."""
    return moment.isoformat().replace("+00:00", "Z") if moment else None


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
    #: 0.2 (§12): the customer the key belongs to; it never changes
    customer_id: str | None = None
    #: 0.2: set while the key is disabled (reversible, unlike revocation)
    disabled_at: datetime | None = None

    @property
    def display(self) -> str:
        return f"{self.prefix}…{self.last4}"

    def status(self, now: datetime | None = None) -> str:
        """``revoked``, ``disabled``, ``expired`` or ``active``: the key's own status.

        A disabled customer does not change it (its keys keep their own status).
        """
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if self.disabled_at is not None:
            return "disabled"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (``keys show --json``, the admin, the API)."""
        return {
            "id": self.id, "environment": self.environment, "customer_id": self.customer_id,
            "name": self.name, "metadata": dict(self.metadata), "scopes": list(self.scopes),
            "prefix": self.prefix, "last4": self.last4, "status": self.status(),
            "created_at": iso(self.created_at), "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at), "disabled_at": iso(self.disabled_at),
            "last_used_at": iso(self.last_used_at),
        }


@dataclass(frozen=True)
class CustomerRecord:
    """0.2 (§12): who a set of keys belongs to. ``id`` is the operator's own."""

    id: str
    created_at: datetime
    name: str = ""
    metadata: Mapping[str, Any] = field(default_factory=frozen_map)
    disabled_at: datetime | None = None

    @property
    def status(self) -> str:
        return "disabled" if self.disabled_at is not None else "active"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "metadata": dict(self.metadata),
                "created_at": iso(self.created_at), "disabled_at": iso(self.disabled_at),
                "status": self.status}


@dataclass(frozen=True)
class BackendRecord:
    """0.2 (§13): a URL backend kept in the store, served beside the configured ones.

    The fields mirror ``[backends.NAME]`` for a URL backend; the values are validated
    exactly as the config validates them before they are stored.
    """

    name: str
    url: str
    timeout: float = 30.0
    connect_timeout: float = 5.0
    strip_prefix: str = ""
    pool_size: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "timeout": self.timeout,
                "connect_timeout": self.connect_timeout, "strip_prefix": self.strip_prefix,
                "pool_size": self.pool_size, "created_at": iso(self.created_at),
                "updated_at": iso(self.updated_at)}


@dataclass(frozen=True)
class AuditRecord:
    """0.2 (§16): one change to a key, a customer or a stored backend. Never a secret.

    ``customer_id`` is the customer the target belongs to (a customer's own id, or the
    customer of a key), so ``envroute audit --customer`` finds its keys' records too.
    ``seq`` orders records (newest first is descending ``seq``); the store assigns it.
    """

    at: datetime
    actor: str
    action: str
    target: str
    changes: Mapping[str, Any] = field(default_factory=frozen_map)
    customer_id: str | None = None
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"at": iso(self.at), "actor": self.actor, "action": self.action,
                "target": self.target, "changes": dict(self.changes),
                "customer_id": self.customer_id}


@dataclass(frozen=True)
class UsageDay:
    """0.2 (§16): one UTC day of a key's (or customer's) traffic."""

    date: date
    requests: int
    errors: int

    def to_dict(self) -> dict[str, Any]:
        return {"date": self.date.isoformat(), "requests": self.requests,
                "errors": self.errors}


@dataclass(frozen=True)
class UsageBatch:
    """What a process collected since its last flush, written in one go (§16).

    ``last_used``: key id -> latest use. ``counts``: (key id, UTC day) -> (requests,
    errors) to *add* to what is stored, so the counts of all workers add up.
    """

    last_used: Mapping[str, datetime] = field(default_factory=frozen_map)
    counts: Mapping[tuple[str, date], tuple[int, int]] = field(
        default_factory=lambda: MappingProxyType({}))

    def __bool__(self) -> bool:
        return bool(self.last_used or self.counts)


@dataclass(frozen=True)
class SecretMatch:
    """What a hash lookup finds: the record, and when that particular secret stops working.

    ``secret_expires_at`` is set on a secret that a roll retired; the record's own
    ``expires_at`` applies to every secret of the key. ``customer`` (0.2) is the key's
    customer record, read in the same query, so the effective metadata needs no second
    look-up.
    """

    record: KeyRecord
    key_hash: bytes
    secret_expires_at: datetime | None = None
    customer: CustomerRecord | None = None


#: The kinds of change a store pushes to every process (§11).
ChangeKind = Literal["key", "customer", "backend", "all"]


@dataclass(frozen=True)
class Change:
    """One change pushed to subscribers: ``kind`` and the id or name it concerns.

    ``Change("all")`` means "something may have changed that you did not hear about"
    (after a listener reconnects, or from a store whose marker only says *that* something
    changed): drop every cached key, customer and backend.
    """

    kind: ChangeKind
    target: str | None = None
