"""The PostgreSQL key store: for many workers and many gateways sharing one database.

    [store]
    url = "postgresql://envroute@db.internal/envroute?schema=envroute"

Why it holds up under gunicorn and across hosts:

- each process opens its own :class:`psycopg_pool.ConnectionPool` lazily, after the fork
  (a pool, its sockets and its threads are never inherited);
- migrations are numbered, recorded in ``envroute_schema_version`` and applied under
  ``pg_advisory_xact_lock``, so any number of processes starting at once migrate once;
- ``revoke`` and ``roll`` send ``NOTIFY envroute_keys, '<key id>'`` in the same
  transaction, and :meth:`PostgresStore.subscribe` runs one ``LISTEN`` thread per process
  (started on first use after the fork, daemon, reconnecting with backoff), so every
  worker of every gateway drops that key from its cache within about a second. After a
  reconnect (notifications may have been missed) it drops every cached key.

``schema`` in the URL's query (not a libpq parameter; removed before connecting) puts the
tables in that schema, created if needed; the default is the connection's search path.

Every psycopg error, an unreachable server and an exhausted pool included, is re-raised
as :class:`~envroute.errors.StoreUnavailable` (503, never a route). Nothing needs
restarting when PostgreSQL comes back: the pool reconnects on its own, and a read that
meets a connection broken by a server restart is retried once on a fresh one.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import ConfigError, KeyNotFound, StoreUnavailable
from ..settings import frozen_map
from .base import InvalidationSource, KeyRecord, KeyStore, SecretMatch

logger = logging.getLogger("envroute")

CHANNEL = "envroute_keys"
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
#: How long a request waits for a connection before the store counts as unavailable.
POOL_TIMEOUT = 3.0
#: The pool gives up a reconnection loop after this long; the next request starts another,
#: so recovery after a long outage is as quick as after a short one.
RECONNECT_TIMEOUT = 10.0
CONNECT_TIMEOUT = 3
#: libpq TCP keepalives, so a dead LISTEN connection is noticed, and a heartbeat query.
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "3",
              "keepalives_count": "3"}
LISTEN_HEARTBEAT = 10.0
LISTEN_BACKOFF_MAX = 5.0

T = TypeVar("T")

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: Schema migrations, in order; the schema's version is how many have run. ``{s}`` is
#: the schema prefix ("" or '"name".').
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {s}envroute_keys (
        id TEXT PRIMARY KEY,
        environment TEXT NOT NULL,
        prefix TEXT NOT NULL,
        last4 TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        metadata JSONB NOT NULL DEFAULT '{{}}',
        scopes TEXT[] NOT NULL DEFAULT '{{}}',
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ,
        revoked_at TIMESTAMPTZ,
        last_used_at TIMESTAMPTZ
    );
    CREATE TABLE {s}envroute_secrets (
        hash BYTEA PRIMARY KEY,
        key_id TEXT NOT NULL REFERENCES {s}envroute_keys (id),
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ
    );
    CREATE INDEX envroute_secrets_key_id ON {s}envroute_secrets (key_id)
    """,
)

_SELECT = """SELECT k.id, k.environment, k.prefix, k.last4, k.name, k.metadata, k.scopes,
              k.created_at, k.expires_at, k.revoked_at, k.last_used_at"""


def parse_url(url: str) -> tuple[str, str]:
    """``postgresql://…?schema=x`` -> (libpq conninfo URL with defaults, schema or "")."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    schema = query.pop("schema", "")
    if schema and not _SCHEMA_NAME.match(schema):
        raise ConfigError(f"schema {schema!r}: lower-case letters, digits and _ only",
                          key="store.url")
    query.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    query.setdefault("application_name", "envroute")
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), "")), schema


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _record(row: tuple[Any, ...]) -> KeyRecord:
    return KeyRecord(
        id=row[0], environment=row[1], prefix=row[2], last4=row[3], name=row[4],
        metadata=frozen_map(row[5]), scopes=tuple(row[6]), created_at=row[7],
        expires_at=row[8], revoked_at=row[9], last_used_at=row[10],
    )


class PostgresStore(KeyStore, InvalidationSource):
    """Keys in PostgreSQL; a connection pool and a ``LISTEN`` thread per process."""

    def __init__(self, url: str, *, pool_timeout: float = POOL_TIMEOUT,
                 max_size: int = POOL_MAX_SIZE) -> None:
        self.url = url
        self.conninfo, self.schema = parse_url(url)
        self.prefix = f'"{self.schema}".' if self.schema else ""
        self.pool_timeout = pool_timeout
        self.max_size = max_size
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pid = 0
        self._migrated_pid = 0
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[str | None], None]] = []
        self._listener: _Listener | None = None

    def _t(self, sql: str) -> str:
        """SQL with its table names qualified by the configured schema."""
        return sql.replace("envroute_", f"{self.prefix}envroute_")

    # -- connections ------------------------------------------------------------------

    def _pool_for_process(self) -> ConnectionPool[psycopg.Connection[Any]]:
        pid = os.getpid()
        if self._pid != pid or self._pool is None:
            with self._lock:
                if self._pid != pid or self._pool is None:
                    # A pool inherited across fork belongs to the parent: never touch it.
                    self._pool = ConnectionPool(
                        self.conninfo, min_size=POOL_MIN_SIZE, max_size=self.max_size,
                        timeout=self.pool_timeout, reconnect_timeout=RECONNECT_TIMEOUT,
                        open=False, name="envroute",
                    )
                    self._pool.open(wait=False)
                    self._pid = pid
                    self._listener = None
        if self._callbacks and (self._listener is None or self._listener.pid != pid):
            self._start_listener()
        return self._pool

    def _run(self, work: Callable[[psycopg.Cursor[Any]], T], *, retry: bool = False) -> T:
        """``work(cursor)`` in one transaction; every psycopg error becomes StoreUnavailable.

        ``retry``: for reads, one more attempt when the connection turned out broken
        (the server restarted since it was pooled; the pool discards such connections).
        """
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                pool = self._pool_for_process()
                self._migrate_once(pool)
                with pool.connection() as connection, connection.cursor() as cursor:
                    return work(cursor)
            except psycopg.OperationalError as exc:
                broken = not isinstance(exc, PoolTimeout)
                if broken and attempt + 1 < attempts:
                    continue
                raise StoreUnavailable(f"PostgreSQL store: {_first_line(exc)}") from exc
            except psycopg.Error as exc:
                raise StoreUnavailable(f"PostgreSQL store: {_first_line(exc)}") from exc
        raise AssertionError("unreachable")

    def _migrate_once(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        pid = os.getpid()
        if self._migrated_pid == pid:
            return
        with pool.connection() as connection:
            self._migrate(connection)
        self._migrated_pid = pid

    def _migrate(self, connection: psycopg.Connection[Any]) -> None:
        with connection.transaction():
            lock_name = f"envroute.migrate:{self.schema}"
            connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_name,))
            if self.schema:
                connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            connection.execute(self._t("CREATE TABLE IF NOT EXISTS envroute_schema_version "
                                       "(version INTEGER NOT NULL)"))
            row = connection.execute(
                self._t("SELECT version FROM envroute_schema_version")).fetchone()
            version = row[0] if row else 0
            if row is None:
                connection.execute(self._t("INSERT INTO envroute_schema_version VALUES (0)"))
            if version > len(MIGRATIONS):
                raise psycopg.DataError(f"schema version {version} is newer than this "
                                        f"envroute supports ({len(MIGRATIONS)}); upgrade it")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.format(s=self.prefix).split(";")):
                    connection.execute(statement)
                connection.execute(self._t("UPDATE envroute_schema_version SET version = %s"),
                                   (number,))

    def migrate(self) -> None:
        self._run(lambda cursor: None)

    def schema_version(self) -> int:
        row = self._run(lambda cursor: cursor.execute(
            self._t("SELECT version FROM envroute_schema_version")).fetchone())
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Stop this process's listener and close its pool."""
        listener, self._listener = self._listener, None
        if listener is not None and listener.pid == os.getpid():
            listener.stop()
        pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close()
        self._pid = 0
        self._migrated_pid = 0

    # -- invalidation -----------------------------------------------------------------

    def subscribe(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(key_id)`` on every revoke or roll, from any process or host;
        ``callback(None)`` after the listener (re)connects, when some may have been
        missed. The listener starts with this process's first use of the store."""
        self._callbacks.append(callback)

    def _start_listener(self) -> None:
        with self._lock:
            pid = os.getpid()
            if self._listener is not None and self._listener.pid == pid:
                return
            self._listener = _Listener(self.conninfo, self._notify)
            self._listener.start()

    def _notify(self, key_id: str | None) -> None:
        for callback in list(self._callbacks):
            try:
                callback(key_id)
            except Exception:  # one bad subscriber must not stop the listener
                logger.exception("invalidation callback failed")

    # -- the hot path -----------------------------------------------------------------

    def lookup(self, key_hash: bytes) -> SecretMatch | None:
        row = self._run(lambda cursor: cursor.execute(self._t(
            f"{_SELECT}, s.hash, s.expires_at FROM envroute_secrets s "
            "JOIN envroute_keys k ON k.id = s.key_id WHERE s.hash = %s"),
            (key_hash,)).fetchone(), retry=True)
        if row is None:
            return None
        return SecretMatch(record=_record(row), key_hash=bytes(row[11]),
                           secret_expires_at=row[12])

    # -- the lifecycle ----------------------------------------------------------------

    def get(self, key_id: str) -> KeyRecord:
        row = self._run(lambda cursor: cursor.execute(self._t(
            f"{_SELECT} FROM envroute_keys k WHERE k.id = %s"), (key_id,)).fetchone(),
            retry=True)
        if row is None:
            raise KeyNotFound(f"no key {key_id}")
        return _record(row)

    def list_keys(self) -> list[KeyRecord]:
        rows = self._run(lambda cursor: cursor.execute(self._t(
            f"{_SELECT} FROM envroute_keys k ORDER BY k.created_at, k.id")).fetchall(),
            retry=True)
        return [_record(row) for row in rows]

    def create(self, record: KeyRecord, key_hash: bytes) -> None:
        def work(cursor: psycopg.Cursor[Any]) -> None:
            cursor.execute(self._t(
                "INSERT INTO envroute_keys (id, environment, prefix, last4, name, metadata,"
                " scopes, created_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"),
                (record.id, record.environment, record.prefix, record.last4, record.name,
                 Jsonb(dict(record.metadata)), list(record.scopes), record.created_at,
                 record.expires_at))
            cursor.execute(self._t("INSERT INTO envroute_secrets (hash, key_id, created_at) "
                                   "VALUES (%s, %s, %s)"),
                           (key_hash, record.id, record.created_at))

        self._run(work)

    def revoke(self, key_id: str, at: datetime) -> KeyRecord:
        def work(cursor: psycopg.Cursor[Any]) -> None:
            cursor.execute(self._t("UPDATE envroute_keys SET revoked_at = "
                                   "COALESCE(revoked_at, %s) WHERE id = %s"), (at, key_id))
            if cursor.rowcount == 0:
                raise KeyNotFound(f"no key {key_id}")
            cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, key_id))

        self._run(work)
        return self.get(key_id)

    def roll(self, key_id: str, key_hash: bytes, last4: str, *, now: datetime,
             retire_at: datetime) -> KeyRecord:
        def work(cursor: psycopg.Cursor[Any]) -> None:
            row = cursor.execute(self._t("SELECT revoked_at FROM envroute_keys WHERE id = %s "
                                         "FOR UPDATE"), (key_id,)).fetchone()
            if row is None:
                raise KeyNotFound(f"no key {key_id}")
            cursor.execute(self._t(
                "UPDATE envroute_secrets SET expires_at = %s WHERE key_id = %s "
                "AND (expires_at IS NULL OR expires_at > %s)"), (retire_at, key_id, retire_at))
            cursor.execute(self._t("INSERT INTO envroute_secrets (hash, key_id, created_at) "
                                   "VALUES (%s, %s, %s)"), (key_hash, key_id, now))
            cursor.execute(self._t("UPDATE envroute_keys SET last4 = %s WHERE id = %s"),
                           (last4, key_id))
            cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, key_id))

        self._run(work)
        return self.get(key_id)

    def record_usage(self, used: Mapping[str, datetime]) -> None:
        if not used:
            return
        self._run(lambda cursor: cursor.executemany(self._t(
            "UPDATE envroute_keys SET last_used_at = %s WHERE id = %s "
            "AND (last_used_at IS NULL OR last_used_at < %s)"),
            [(at, key_id, at) for key_id, at in used.items()]))


class _Listener:
    """One daemon thread per process: ``LISTEN envroute_keys``, reconnecting with backoff."""

    def __init__(self, conninfo: str, notify: Callable[[str | None], None]) -> None:
        self.conninfo = conninfo
        self.notify = notify
        self.pid = os.getpid()
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="envroute-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                self.connected.clear()
                logger.warning("PostgreSQL LISTEN %s lost (%s); reconnecting in %.1fs",
                               CHANNEL, str(exc).strip().splitlines()[0] if str(exc) else exc,
                               delay)
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, LISTEN_BACKOFF_MAX)

    def _listen(self) -> None:
        conninfo = psycopg.conninfo.make_conninfo(self.conninfo, **KEEPALIVES)
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            self.connected.set()
            self.notify(None)  # whatever changed while we were not listening
            idle = 0.0
            while not self._stop.is_set():
                for notification in connection.notifies(timeout=1.0):
                    self.notify(notification.payload or None)
                    idle = 0.0
                idle += 1.0
                if idle >= LISTEN_HEARTBEAT:  # notice a silently dead connection
                    connection.execute("SELECT 1")
                    idle = 0.0
