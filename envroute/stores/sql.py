"""Every store operation on one record, in SQL that SQLite and PostgreSQL both run.

:class:`SQLStore` holds the queries for keys, customers and stored backends over the hooks
of :class:`~envroute.stores.sqlcore.SQLCore` (connection, transaction, rendering, how a
change is announced), which also holds usage, audit and secret rotation. The hot path is
:meth:`SQLStore.lookup`: one query, joined with the key's customer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ..errors import AlreadyExists, BackendNotFound, CustomerNotFound, KeyNotFound
from . import rows
from .base import BackendRecord, Change, CustomerRecord, KeyRecord, SecretMatch, utcnow
from .sqlcore import TABLES, Cursor, SQLCore

__all__ = ["TABLES", "Cursor", "SQLStore"]

KEY = ", ".join(f"k.{c}" for c in rows.KEY_COLUMNS)
CUSTOMER = ", ".join(f"c.{c} AS {rows.JOINED}{c}" for c in rows.CUSTOMER_COLUMNS)
LOOKUP = (f"SELECT {KEY}, {CUSTOMER}, s.hash, s.expires_at AS secret_expires_at "
          "FROM {secrets} s JOIN {keys} k ON k.id = s.key_id "
          "LEFT JOIN {customers} c ON c.id = k.customer_id WHERE s.hash = %s")
CUSTOMER_SELECT = "SELECT id, name, metadata, created_at, disabled_at FROM {customers}"
BACKEND_SELECT = f"SELECT {', '.join(rows.BACKEND_COLUMNS)} FROM {{backends}}"
#: the fields of a key that ``update_key`` may change
KEY_CHANGES = ("metadata", "name", "expires_at")
CUSTOMER_CHANGES = ("metadata", "name")


class SQLStore(SQLCore):
    """The store's operations over any DB-API database with ``INSERT … ON CONFLICT``."""

    def _key(self, cursor: Cursor, key_id: str) -> KeyRecord:
        row = self._one(cursor, f"SELECT {KEY} FROM {{keys}} k WHERE k.id = %s", (key_id,))
        if row is None:
            raise KeyNotFound(f"no key {key_id}")
        return rows.key_record(row)

    # -- the hot path ---------------------------------------------------------------------

    def lookup(self, key_hash: bytes) -> SecretMatch | None:
        found = self._all(LOOKUP, (key_hash,))
        return rows.secret_match(found[0]) if found else None

    # -- keys -----------------------------------------------------------------------------

    def get(self, key_id: str) -> KeyRecord:
        found = self._all(f"SELECT {KEY} FROM {{keys}} k WHERE k.id = %s", (key_id,))
        if not found:
            raise KeyNotFound(f"no key {key_id}")
        return rows.key_record(found[0])

    def list_keys(self) -> list[KeyRecord]:
        return [rows.key_record(row) for row in self._all(
            f"SELECT {KEY} FROM {{keys}} k ORDER BY k.created_at, k.id")]

    def list_customer_keys(self, customer_id: str) -> list[KeyRecord]:
        return [rows.key_record(row) for row in self._all(
            f"SELECT {KEY} FROM {{keys}} k WHERE k.customer_id = %s "
            "ORDER BY k.created_at, k.id", (customer_id,))]

    def create(self, record: KeyRecord, key_hash: bytes, *, fingerprint: str = "") -> None:
        # no announcement: nobody can have cached a key that did not exist
        with self._transaction(write=True) as cursor:
            if record.customer_id is not None and self._one(
                    cursor, "SELECT id FROM {customers} WHERE id = %s",
                    (record.customer_id,)) is None:
                raise CustomerNotFound(f"no customer {record.customer_id}")
            cursor.execute(self._sql(
                "INSERT INTO {keys} (id, environment, prefix, last4, name, metadata, scopes, "
                "created_at, expires_at, revoked_at, disabled_at, customer_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"),
                (record.id, record.environment, record.prefix, record.last4, record.name,
                 self._json(record.metadata), self._list(record.scopes),
                 self._time(record.created_at), self._time(record.expires_at),
                 self._time(record.revoked_at), self._time(record.disabled_at),
                 record.customer_id))
            cursor.execute(self._sql(
                "INSERT INTO {secrets} (hash, key_id, created_at, fingerprint) "
                "VALUES (%s, %s, %s, %s)"),
                (key_hash, record.id, self._time(record.created_at), fingerprint))

    def revoke(self, key_id: str, at: datetime) -> KeyRecord:
        with self._transaction(write=True, change=Change("key", key_id)) as cursor:
            cursor.execute(self._sql("UPDATE {keys} SET revoked_at = COALESCE(revoked_at, %s) "
                                     "WHERE id = %s"), (self._time(at), key_id))
            return self._key(cursor, key_id)

    def roll(self, key_id: str, key_hash: bytes, last4: str, *, now: datetime,
             retire_at: datetime, fingerprint: str = "") -> KeyRecord:
        with self._transaction(write=True, change=Change("key", key_id)) as cursor:
            self._lock_key(cursor, key_id)
            cursor.execute(self._sql(  # only the secret being replaced (§3)
                "UPDATE {secrets} SET expires_at = %s WHERE key_id = %s "
                "AND expires_at IS NULL"), (self._time(retire_at), key_id))
            cursor.execute(self._sql(
                "INSERT INTO {secrets} (hash, key_id, created_at, fingerprint) "
                "VALUES (%s, %s, %s, %s)"), (key_hash, key_id, self._time(now), fingerprint))
            cursor.execute(self._sql("UPDATE {keys} SET last4 = %s WHERE id = %s"),
                           (last4, key_id))
            return self._key(cursor, key_id)

    def _lock_key(self, cursor: Cursor, key_id: str) -> None:
        """Make sure the key exists (and, where the database can, lock its row)."""
        self._key(cursor, key_id)

    def update_key(self, key_id: str, changes: Mapping[str, Any]) -> KeyRecord:
        values: dict[str, Callable[[Any], Any]] = {
            "metadata": self._json, "name": str, "expires_at": self._time}
        fields = [name for name in KEY_CHANGES if name in changes]
        with self._transaction(write=True, change=Change("key", key_id)) as cursor:
            if fields:
                assignments = ", ".join(f"{name} = %s" for name in fields)
                cursor.execute(self._sql(f"UPDATE {{keys}} SET {assignments} WHERE id = %s"),
                               [values[name](changes[name]) for name in fields] + [key_id])
            return self._key(cursor, key_id)

    def set_key_disabled(self, key_id: str, at: datetime | None) -> KeyRecord:
        with self._transaction(write=True, change=Change("key", key_id)) as cursor:
            cursor.execute(self._sql("UPDATE {keys} SET disabled_at = COALESCE(disabled_at, %s)"
                                     " WHERE id = %s" if at is not None else
                                     "UPDATE {keys} SET disabled_at = NULL WHERE id = %s"),
                           (self._time(at), key_id) if at is not None else (key_id,))
            return self._key(cursor, key_id)

    # -- customers ------------------------------------------------------------------------

    def _customer(self, cursor: Cursor, customer_id: str) -> CustomerRecord:
        row = self._one(cursor, f"{CUSTOMER_SELECT} WHERE id = %s", (customer_id,))
        record = rows.customer_record(row) if row is not None else None
        if record is None:
            raise CustomerNotFound(f"no customer {customer_id}")
        return record

    def create_customer(self, record: CustomerRecord) -> CustomerRecord:
        with self._transaction(write=True, change=Change("customer", record.id)) as cursor:
            cursor.execute(self._sql(
                "INSERT INTO {customers} (id, name, metadata, created_at, disabled_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING"),
                (record.id, record.name, self._json(record.metadata),
                 self._time(record.created_at), self._time(record.disabled_at)))
            if cursor.rowcount == 0:
                raise AlreadyExists(f"customer {record.id} already exists")
            return self._customer(cursor, record.id)

    def get_customer(self, customer_id: str) -> CustomerRecord:
        found = self._all(f"{CUSTOMER_SELECT} WHERE id = %s", (customer_id,))
        record = rows.customer_record(found[0]) if found else None
        if record is None:
            raise CustomerNotFound(f"no customer {customer_id}")
        return record

    def list_customers(self) -> list[CustomerRecord]:
        found = (rows.customer_record(row) for row in self._all(
            f"{CUSTOMER_SELECT} ORDER BY created_at, id"))
        return [record for record in found if record is not None]

    def update_customer(self, customer_id: str, changes: Mapping[str, Any]) -> CustomerRecord:
        fields = [name for name in CUSTOMER_CHANGES if name in changes]
        with self._transaction(write=True, change=Change("customer", customer_id)) as cursor:
            if fields:
                assignments = ", ".join(f"{name} = %s" for name in fields)
                cursor.execute(
                    self._sql(f"UPDATE {{customers}} SET {assignments} WHERE id = %s"),
                    [self._json(changes[name]) if name == "metadata" else str(changes[name])
                     for name in fields] + [customer_id])
            return self._customer(cursor, customer_id)

    def set_customer_disabled(self, customer_id: str, at: datetime | None) -> CustomerRecord:
        with self._transaction(write=True, change=Change("customer", customer_id)) as cursor:
            if at is not None:
                cursor.execute(self._sql("UPDATE {customers} SET disabled_at = "
                                         "COALESCE(disabled_at, %s) WHERE id = %s"),
                               (self._time(at), customer_id))
            else:
                cursor.execute(self._sql("UPDATE {customers} SET disabled_at = NULL "
                                         "WHERE id = %s"), (customer_id,))
            return self._customer(cursor, customer_id)

    # -- stored backends ------------------------------------------------------------------

    def _backend(self, cursor: Cursor, name: str) -> BackendRecord:
        row = self._one(cursor, f"{BACKEND_SELECT} WHERE name = %s", (name,))
        if row is None:
            raise BackendNotFound(f"no stored backend {name}")
        return rows.backend_record(row)

    def add_backend(self, record: BackendRecord) -> BackendRecord:
        now = record.created_at or utcnow()
        with self._transaction(write=True, change=Change("backend", record.name)) as cursor:
            cursor.execute(self._sql(
                f"INSERT INTO {{backends}} ({', '.join(rows.BACKEND_COLUMNS)}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING"),
                (record.name, record.url, record.timeout, record.connect_timeout,
                 record.strip_prefix, record.pool_size, self._time(now),
                 self._time(record.updated_at or now)))
            if cursor.rowcount == 0:
                raise AlreadyExists(f"stored backend {record.name} already exists")
            return self._backend(cursor, record.name)

    def update_backend(self, record: BackendRecord) -> BackendRecord:
        with self._transaction(write=True, change=Change("backend", record.name)) as cursor:
            cursor.execute(self._sql(
                "UPDATE {backends} SET url = %s, timeout = %s, connect_timeout = %s, "
                "strip_prefix = %s, pool_size = %s, updated_at = %s WHERE name = %s"),
                (record.url, record.timeout, record.connect_timeout, record.strip_prefix,
                 record.pool_size, self._time(record.updated_at or utcnow()), record.name))
            return self._backend(cursor, record.name)

    def remove_backend(self, name: str) -> BackendRecord:
        with self._transaction(write=True, change=Change("backend", name)) as cursor:
            record = self._backend(cursor, name)
            cursor.execute(self._sql("DELETE FROM {backends} WHERE name = %s"), (name,))
            return record

    def get_backend(self, name: str) -> BackendRecord:
        found = self._all(f"{BACKEND_SELECT} WHERE name = %s", (name,))
        if not found:
            raise BackendNotFound(f"no stored backend {name}")
        return rows.backend_record(found[0])

    def list_backends(self) -> list[BackendRecord]:
        return [rows.backend_record(row) for row in self._all(
            f"{BACKEND_SELECT} ORDER BY name")]
