"""The default key store: one SQLite file in WAL mode.

Why it holds up under gunicorn: each process opens its own connections after the fork
(never inherited), each thread gets its own connection, WAL lets readers run beside the
single writer, and ``busy_timeout`` makes a writer wait rather than fail while another
process writes. Migrations run in one ``BEGIN IMMEDIATE`` transaction keyed on
``PRAGMA user_version``, so several workers starting at once migrate exactly once.

Every :mod:`sqlite3` error is re-raised as :class:`~envroute.errors.StoreUnavailable`:
a missing directory, a file that is not a database or a locked disk all answer 503.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from ..errors import ConfigError, KeyNotFound, StoreUnavailable
from .base import KeyRecord, KeyStore, SecretMatch, dump_metadata, load_metadata

BUSY_TIMEOUT_MS = 5000

#: Schema migrations, in order; the schema's version is their count (PRAGMA user_version).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE envroute_keys (
        id TEXT PRIMARY KEY,
        environment TEXT NOT NULL,
        prefix TEXT NOT NULL,
        last4 TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        metadata TEXT NOT NULL DEFAULT '{}',
        scopes TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        expires_at TEXT,
        revoked_at TEXT,
        last_used_at TEXT
    );
    CREATE TABLE envroute_secrets (
        hash BLOB PRIMARY KEY,
        key_id TEXT NOT NULL REFERENCES envroute_keys (id),
        created_at TEXT NOT NULL,
        expires_at TEXT
    );
    CREATE INDEX envroute_secrets_key_id ON envroute_secrets (key_id);
    """,
)

_SELECT = """SELECT k.id, k.environment, k.prefix, k.last4, k.name, k.metadata, k.scopes,
                    k.created_at, k.expires_at, k.revoked_at, k.last_used_at"""


def path_from_url(url: str) -> str:
    """``sqlite:///envroute.db`` -> ``envroute.db``; ``sqlite:////var/x.db`` -> ``/var/x.db``."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"{url!r}: expected sqlite:///relative/path.db or "
                          "sqlite:////absolute/path.db", key="store.url")
    path = url[len("sqlite:///") :]
    if not path or path == ":memory:":
        raise ConfigError("the SQLite store needs a file (several processes share it)",
                          key="store.url")
    return path


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _record(row: tuple[object, ...]) -> KeyRecord:
    created = _time(row[7])  # type: ignore[arg-type]
    assert created is not None
    return KeyRecord(
        id=row[0], environment=row[1], prefix=row[2], last4=row[3],  # type: ignore[arg-type]
        name=row[4], metadata=load_metadata(row[5]),  # type: ignore[arg-type]
        scopes=tuple(json.loads(row[6])), created_at=created,  # type: ignore[arg-type]
        expires_at=_time(row[8]), revoked_at=_time(row[9]),  # type: ignore[arg-type]
        last_used_at=_time(row[10]),  # type: ignore[arg-type]
    )


class SQLiteStore(KeyStore):
    """Keys in a SQLite file; one connection per thread per process, opened lazily."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = str(Path(path_from_url(url)))
        self._local = threading.local()
        self._migrated_pid = 0
        self._lock = threading.Lock()

    # -- connections ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                     isolation_level=None, check_same_thread=True)
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        return connection

    def _connection(self) -> sqlite3.Connection:
        pid = os.getpid()
        local = self._local
        if getattr(local, "pid", None) != pid:  # new thread, or a forked child
            local.connection = self._connect()
            local.pid = pid
        if self._migrated_pid != pid:
            with self._lock:
                if self._migrated_pid != pid:
                    self._migrate(local.connection)
                    self._migrated_pid = pid
        connection: sqlite3.Connection = local.connection
        return connection

    @contextmanager
    def _cursor(self, *, write: bool = False) -> Iterator[sqlite3.Cursor]:
        try:
            connection = self._connection()
            cursor = connection.cursor()
            if write:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield cursor
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
            else:
                yield cursor
        except sqlite3.Error as exc:
            self._local.pid = None  # reconnect next time: the file may have been fixed
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc

    def _migrate(self, connection: sqlite3.Connection) -> None:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version == len(MIGRATIONS):
            return
        if version > len(MIGRATIONS):
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this "
                                        f"envroute supports ({len(MIGRATIONS)}); upgrade it")
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {number}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def migrate(self) -> None:
        with self._cursor():
            pass

    def schema_version(self) -> int:
        with self._cursor() as cursor:
            version: int = cursor.execute("PRAGMA user_version").fetchone()[0]
            return version

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None and getattr(self._local, "pid", None) == os.getpid():
            connection.close()
        self._local = threading.local()

    # -- the hot path -----------------------------------------------------------------

    def lookup(self, key_hash: bytes) -> SecretMatch | None:
        with self._cursor() as cursor:
            row = cursor.execute(
                f"{_SELECT}, s.hash, s.expires_at FROM envroute_secrets s "
                "JOIN envroute_keys k ON k.id = s.key_id WHERE s.hash = ?",
                (key_hash,),
            ).fetchone()
        if row is None:
            return None
        return SecretMatch(record=_record(row), key_hash=bytes(row[11]),
                           secret_expires_at=_time(row[12]))

    # -- the lifecycle ----------------------------------------------------------------

    def get(self, key_id: str) -> KeyRecord:
        with self._cursor() as cursor:
            row = cursor.execute(f"{_SELECT} FROM envroute_keys k WHERE k.id = ?",
                                 (key_id,)).fetchone()
        if row is None:
            raise KeyNotFound(f"no key {key_id}")
        return _record(row)

    def list_keys(self) -> list[KeyRecord]:
        with self._cursor() as cursor:
            rows = cursor.execute(f"{_SELECT} FROM envroute_keys k "
                                  "ORDER BY k.created_at, k.id").fetchall()
        return [_record(row) for row in rows]

    def create(self, record: KeyRecord, key_hash: bytes) -> None:
        with self._cursor(write=True) as cursor:
            cursor.execute(
                "INSERT INTO envroute_keys (id, environment, prefix, last4, name, metadata,"
                " scopes, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.environment, record.prefix, record.last4, record.name,
                 dump_metadata(record.metadata), json.dumps(list(record.scopes)),
                 _iso(record.created_at), _iso(record.expires_at)),
            )
            cursor.execute("INSERT INTO envroute_secrets (hash, key_id, created_at) "
                           "VALUES (?, ?, ?)", (key_hash, record.id, _iso(record.created_at)))

    def revoke(self, key_id: str, at: datetime) -> KeyRecord:
        with self._cursor(write=True) as cursor:
            cursor.execute("UPDATE envroute_keys SET revoked_at = COALESCE(revoked_at, ?) "
                           "WHERE id = ?", (_iso(at), key_id))
            if cursor.rowcount == 0:
                raise KeyNotFound(f"no key {key_id}")
        return self.get(key_id)

    def roll(self, key_id: str, key_hash: bytes, last4: str, *, now: datetime,
             retire_at: datetime) -> KeyRecord:
        with self._cursor(write=True) as cursor:
            row = cursor.execute("SELECT revoked_at FROM envroute_keys WHERE id = ?",
                                 (key_id,)).fetchone()
            if row is None:
                raise KeyNotFound(f"no key {key_id}")
            cursor.execute(
                "UPDATE envroute_secrets SET expires_at = ? WHERE key_id = ? "
                "AND (expires_at IS NULL OR expires_at > ?)",
                (_iso(retire_at), key_id, _iso(retire_at)),
            )
            cursor.execute("INSERT INTO envroute_secrets (hash, key_id, created_at) "
                           "VALUES (?, ?, ?)", (key_hash, key_id, _iso(now)))
            cursor.execute("UPDATE envroute_keys SET last4 = ? WHERE id = ?", (last4, key_id))
        return self.get(key_id)

    def record_usage(self, used: Mapping[str, datetime]) -> None:
        if not used:
            return
        with self._cursor(write=True) as cursor:
            cursor.executemany(
                "UPDATE envroute_keys SET last_used_at = ? WHERE id = ? "
                "AND (last_used_at IS NULL OR last_used_at < ?)",
                [(_iso(at), key_id, _iso(at)) for key_id, at in used.items()],
            )
