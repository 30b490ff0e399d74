"""The one row mapper: database values -> the store's records, for every store.

A row is any mapping of column name to value: a SQLite row (text timestamps, JSON text),
a PostgreSQL row (``timestamptz``, ``jsonb``, ``text[]``, ``memoryview``) or a Django
model's fields (aware or naive datetimes, depending on ``USE_TZ``). Each value passes
through one normaliser for its type, so every store answers with the same records:
timestamps aware and in UTC (a naive one is UTC), metadata read-only mappings, scopes
tuples. Risk: a store that maps a row on its own drifts (0.1's Django mapper kept naive
datetimes, which then compared unequal and printed without a zone).

Joined rows carry the customer's columns with a ``customer__`` prefix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from ..settings import frozen_map
from .base import AuditRecord, BackendRecord, CustomerRecord, KeyRecord, SecretMatch, UsageDay

#: Anything indexed by column name: a dict, a ``sqlite3.Row``, a psycopg ``dict_row``.
Row = Any

KEY_COLUMNS = ("id", "environment", "prefix", "last4", "name", "metadata", "scopes",
               "created_at", "expires_at", "revoked_at", "last_used_at", "customer_id",
               "disabled_at")
CUSTOMER_COLUMNS = ("id", "name", "metadata", "created_at", "disabled_at")
BACKEND_COLUMNS = ("name", "url", "timeout", "connect_timeout", "strip_prefix", "pool_size",
                   "created_at", "updated_at")
AUDIT_COLUMNS = ("seq", "at", "actor", "action", "target", "changes", "customer_id")
JOINED = "customer__"


def moment(value: Any) -> datetime | None:
    """A stored timestamp as an aware UTC datetime (naive values are UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def required_moment(value: Any) -> datetime:
    result = moment(value)
    assert result is not None, "a NOT NULL timestamp"
    return result


def day(value: Any) -> date:
    if isinstance(value, str):
        return date.fromisoformat(value)
    if isinstance(value, datetime):
        return value.date()
    assert isinstance(value, date)
    return value


def mapping(value: Any) -> Mapping[str, Any]:
    if value is None or value == "":
        return frozen_map({})
    if isinstance(value, (str, bytes)):
        value = json.loads(value)
    return frozen_map(dict(value))


def strings(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, (str, bytes)):
        value = json.loads(value)
    return tuple(str(item) for item in value)


def blob(value: Any) -> bytes:
    if isinstance(value, str):  # the Django store keeps hashes as hex
        return bytes.fromhex(value)
    return bytes(value)


def key_record(row: Row) -> KeyRecord:
    return KeyRecord(
        id=row["id"], environment=row["environment"], prefix=row["prefix"],
        last4=row["last4"], name=row["name"] or "", metadata=mapping(row["metadata"]),
        scopes=strings(row["scopes"]), created_at=required_moment(row["created_at"]),
        expires_at=moment(row["expires_at"]), revoked_at=moment(row["revoked_at"]),
        last_used_at=moment(row["last_used_at"]), customer_id=row["customer_id"],
        disabled_at=moment(row["disabled_at"]),
    )


def customer_record(row: Row, prefix: str = "") -> CustomerRecord | None:
    """The customer in ``row`` (columns named ``prefix`` + column), None if absent."""
    if row[f"{prefix}id"] is None:
        return None
    return CustomerRecord(
        id=row[f"{prefix}id"], name=row[f"{prefix}name"] or "",
        metadata=mapping(row[f"{prefix}metadata"]),
        created_at=required_moment(row[f"{prefix}created_at"]),
        disabled_at=moment(row[f"{prefix}disabled_at"]),
    )


def secret_match(row: Row) -> SecretMatch:
    """A key row joined with one secret (``hash``, ``secret_expires_at``) and its customer."""
    return SecretMatch(record=key_record(row), key_hash=blob(row["hash"]),
                       secret_expires_at=moment(row["secret_expires_at"]),
                       customer=customer_record(row, JOINED))


def backend_record(row: Row) -> BackendRecord:
    return BackendRecord(
        name=row["name"], url=row["url"], timeout=float(row["timeout"]),
        connect_timeout=float(row["connect_timeout"]), strip_prefix=row["strip_prefix"] or "",
        pool_size=int(row["pool_size"]), created_at=moment(row["created_at"]),
        updated_at=moment(row["updated_at"]),
    )


def audit_record(row: Row) -> AuditRecord:
    return AuditRecord(
        at=required_moment(row["at"]), actor=row["actor"], action=row["action"],
        target=row["target"], changes=mapping(row["changes"]),
        customer_id=row["customer_id"], seq=int(row["seq"]),
    )


def usage_day(row: Row) -> UsageDay:
    return UsageDay(date=day(row["day"]), requests=int(row["requests"]),
                    errors=int(row["errors"]))


def dump_json(value: Mapping[str, Any] | list[Any] | tuple[Any, ...]) -> str:
    """Compact, sorted JSON: how SQLite keeps ``json`` and ``list`` columns."""
    if isinstance(value, Mapping):
        value = dict(value)
    elif isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def utc_text(value: datetime | None) -> str | None:
    """A timestamp as SQLite keeps it: ISO 8601 in UTC, so text order is time order."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()
