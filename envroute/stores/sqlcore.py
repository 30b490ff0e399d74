"""The part of the SQL stores that is not about one record: the hooks a database supplies,
and the tables written in batches or appended to (usage, audit, secret rotation).

:class:`SQLCore` is the base of :class:`envroute.stores.sql.SQLStore`. A subclass supplies
the connection and transaction (:meth:`SQLCore._transaction`), how a template's table names
and ``%s`` parameters are rendered (:meth:`SQLCore._sql`), how a value is passed for a
``time``, ``json``, ``list`` or ``date`` column, and how a change reaches other processes.
Templates name tables as ``{keys}``, ``{secrets}``, ``{customers}``, ``{backends}``,
``{usage}`` and ``{audit}``; PostgreSQL renders them with :mod:`psycopg.sql` (quoted,
schema-qualified).

Batches (:meth:`SQLCore.write_usage`, :meth:`SQLCore.rehash`) touch rows in one sorted
order, keys before usage, so two workers flushing at once wait for each other instead of
deadlocking; a failed batch is rolled back whole, so writing it again adds nothing twice.
Risk: a new batch query that walks rows in another order brings the deadlock back.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Any, Protocol

from . import rows
from .base import AuditRecord, Change, KeyStore, UsageBatch, UsageDay, utcnow

TABLES = {"keys": "envroute_keys", "secrets": "envroute_secrets",
          "customers": "envroute_customers", "backends": "envroute_backends",
          "usage": "envroute_usage", "audit": "envroute_audit"}


class Cursor(Protocol):
    """The part of a DB-API cursor the queries use; rows are mappings by column name."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, query: str, params: Any = ..., /) -> Any: ...
    def executemany(self, query: str, params: Any, /) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> Any: ...


class SQLCore(KeyStore):
    """The hooks of a SQL database, and the batch and log tables over them."""

    # -- what a database supplies ---------------------------------------------------------

    @abstractmethod
    def _sql(self, template: str) -> str:
        """``template`` with its ``{table}`` names and ``%s`` parameters rendered."""

    @abstractmethod
    def _transaction(self, *, write: bool = False,
                     change: Change | None = None) -> AbstractContextManager[Cursor]:
        """One transaction; ``change`` reaches every subscriber once it is committed.
        Database errors leave it as :class:`~envroute.errors.StoreUnavailable`."""

    def _all(self, template: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        """The rows of one read (a store may retry it once on a fresh connection)."""
        with self._transaction() as cursor:
            cursor.execute(self._sql(template), params)
            return list(cursor.fetchall())

    def _time(self, value: datetime | None) -> Any:
        return value

    def _json(self, value: Mapping[str, Any]) -> Any:
        return rows.dump_json(value)

    def _list(self, value: Sequence[str]) -> Any:
        return rows.dump_json(list(value))

    def _day(self, value: date) -> Any:
        return value

    # -- helpers --------------------------------------------------------------------------

    def _one(self, cursor: Cursor, template: str, params: Sequence[Any] = ()
             ) -> Mapping[str, Any] | None:
        cursor.execute(self._sql(template), params)
        row: Mapping[str, Any] | None = cursor.fetchone()
        return row

    # -- usage and audit ------------------------------------------------------------------

    def write_usage(self, batch: UsageBatch) -> None:
        if not batch:
            return
        last_used = sorted(batch.last_used.items())
        counts = sorted(batch.counts.items())
        with self._transaction(write=True) as cursor:
            if last_used:
                cursor.executemany(self._sql(
                    "UPDATE {keys} SET last_used_at = %s WHERE id = %s "
                    "AND (last_used_at IS NULL OR last_used_at < %s)"),
                    [(self._time(at), key_id, self._time(at)) for key_id, at in last_used])
            if counts:
                cursor.executemany(self._sql(
                    "INSERT INTO {usage} AS u (key_id, day, requests, errors) "
                    "SELECT %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM {keys} WHERE id = %s) "
                    "ON CONFLICT (key_id, day) DO UPDATE SET "
                    "requests = u.requests + excluded.requests, "
                    "errors = u.errors + excluded.errors"),
                    [(key_id, self._day(day), requests, errors, key_id)
                     for (key_id, day), (requests, errors) in counts])

    def record_usage(self, used: Mapping[str, datetime]) -> None:
        self.write_usage(UsageBatch(last_used=used))

    def usage(self, key_ids: Sequence[str], since: date) -> list[UsageDay]:
        if not key_ids:
            return []
        marks = ", ".join(["%s"] * len(key_ids))
        return [rows.usage_day(row) for row in self._all(
            "SELECT day, SUM(requests) AS requests, SUM(errors) AS errors FROM {usage} "
            f"WHERE key_id IN ({marks}) AND day >= %s GROUP BY day "
            "HAVING SUM(requests) > 0 ORDER BY day", [*key_ids, self._day(since)])]

    def append_audit(self, record: AuditRecord) -> None:
        with self._transaction(write=True) as cursor:
            cursor.execute(self._sql(
                "INSERT INTO {audit} (at, actor, action, kind, target, changes, customer_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)"),
                (self._time(record.at), record.actor, record.action,
                 record.action.partition(".")[0], record.target, self._json(record.changes),
                 record.customer_id))

    def list_audit(self, *, key_id: str | None = None, customer_id: str | None = None,
                   backend: str | None = None,
                   since: datetime | None = None) -> list[AuditRecord]:
        where, params = audit_filter(key_id=key_id, customer_id=customer_id, backend=backend)
        if since is not None:
            where.append("at >= %s")
            params.append(self._time(since))
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        return [rows.audit_record(row) for row in self._all(
            f"SELECT {', '.join(rows.AUDIT_COLUMNS)} FROM {{audit}} {clause}"
            "ORDER BY seq DESC", params)]

    # -- secret rotation ------------------------------------------------------------------

    def rehash(self, pairs: Mapping[bytes, tuple[bytes, str]]) -> None:
        if not pairs:
            return
        with self._transaction(write=True) as cursor:
            cursor.executemany(self._sql(
                "UPDATE {secrets} SET hash = %s, fingerprint = %s WHERE hash = %s"),
                [(new, fingerprint, old) for old, (new, fingerprint) in sorted(pairs.items())])

    def retiring_secrets(self, now: datetime, until: datetime) -> list[tuple[str, datetime]]:
        found = self._all(
            "SELECT key_id, expires_at FROM {secrets} WHERE expires_at IS NOT NULL "
            "AND expires_at > %s AND expires_at <= %s ORDER BY expires_at, key_id",
            (self._time(now), self._time(until)))
        return [(row["key_id"], rows.required_moment(row["expires_at"])) for row in found]

    def secret_fingerprints(self) -> dict[str, int]:
        now = self._time(utcnow())
        found = self._all(
            "SELECT s.fingerprint AS fingerprint, COUNT(*) AS secrets FROM {secrets} s "
            "JOIN {keys} k ON k.id = s.key_id WHERE k.revoked_at IS NULL "
            "AND (k.expires_at IS NULL OR k.expires_at > %s) "
            "AND (s.expires_at IS NULL OR s.expires_at > %s) GROUP BY s.fingerprint",
            (now, now))
        return {row["fingerprint"]: int(row["secrets"]) for row in found}


def audit_filter(*, key_id: str | None, customer_id: str | None,
                 backend: str | None) -> tuple[list[str], list[Any]]:
    """The WHERE terms of ``envroute audit``'s filters (``--customer`` includes the
    records of the customer's keys, which carry its id in ``customer_id``)."""
    where: list[str] = []
    params: list[Any] = []
    if key_id is not None:
        where.append("(kind = 'key' AND target = %s)")
        params.append(key_id)
    if backend is not None:
        where.append("(kind = 'backend' AND target = %s)")
        params.append(backend)
    if customer_id is not None:
        where.append("(customer_id = %s OR (kind = 'customer' AND target = %s))")
        params += [customer_id, customer_id]
    return where, params

