"""The PostgreSQL key store: for many workers and many gateways sharing one database.

    [store]
    url = "postgresql://envroute@db.internal/envroute?schema=envroute"

Why it holds up under gunicorn and across hosts:

- each process opens its own :class:`psycopg_pool.ConnectionPool` lazily, after the fork
  (a pool, its sockets and its threads are never inherited);
- the schema (:mod:`envroute.stores.schema`) is versioned in ``envroute_schema_version``
  and migrated under ``pg_advisory_xact_lock``, so any number of processes starting at
  once migrate once; a store made by envroute 0.1 (version 1) is migrated in place;
- every change to a key, customer or stored backend sends ``NOTIFY`` in its own
  transaction, and :meth:`PostgresStore.subscribe` runs one ``LISTEN`` thread per process
  (:mod:`envroute.stores.pglisten`), so every worker of every gateway hears it within
  about a second; after a reconnect it drops everything cached.

``schema`` in the URL's query (not a libpq parameter; removed before connecting) puts the
tables in that schema, created if needed; the default is the connection's search path.
Identifiers are quoted with :mod:`psycopg.sql`.

Every call is bounded (issue 16): a connection from the pool within ``pool_timeout``
(3 s), then the query within ``query_timeout`` (3 s: the server's ``statement_timeout``,
and a client-side deadline that cuts the socket of a server that stopped answering);
TCP keepalives on every connection. Past that the call raises
:class:`~envroute.errors.StoreUnavailable` (503, never a route), as does every psycopg
error. Nothing needs restarting when PostgreSQL comes back: the pool reconnects on its
own, and a read that meets a broken connection is retried once on a fresh one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import ConfigError, StoreUnavailable
from . import schema
from .base import Change, InvalidationSource
from .deadline import WATCHDOG, sever
from .pglisten import KEEPALIVES, Listener, payload
from .sql import SQLStore
from .sqlcore import TABLES, Cursor

logger = logging.getLogger("envroute")
# The pool logs every failed attempt to reconnect; envroute reports the outage itself
# (503s, one line from the CLI). Without this, a process that configured no logging gets
# the pool's lines on stderr through logging's last resort; with logging configured, they
# still reach the application's handlers.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())

POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
#: How long a call waits for a connection before the store counts as unavailable.
POOL_TIMEOUT = 3.0
#: How long one call may run on its connection (server and client side).
QUERY_TIMEOUT = 3.0
#: Migrations may wait for another process's migration: a longer deadline.
MIGRATE_TIMEOUT = 30.0
#: The pool gives up a reconnection loop after this long; the next request starts another,
#: so recovery after a long outage is as quick as after a short one.
RECONNECT_TIMEOUT = 10.0
CONNECT_TIMEOUT = 3
#: The client-side deadline allows the server's own statement_timeout to answer first.
GRACE = 0.5

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def parse_url(url: str) -> tuple[str, str]:
    """``postgresql://…?schema=x`` -> (libpq conninfo URL with defaults, schema or "")."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    schema_name = query.pop("schema", "")
    if schema_name and not _SCHEMA_NAME.match(schema_name):
        raise ConfigError(f"schema {schema_name!r}: lower-case letters, digits and _ only",
                          key="store.url")
    query.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    query.setdefault("application_name", "envroute")
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), "")), schema_name


def channel_name(schema_name: str) -> str:
    """The NOTIFY channel of a schema's store (at most 63 bytes, as identifiers are)."""
    if not schema_name:
        return "envroute_changes"
    name = f"envroute_changes_{schema_name}"
    if len(name) > 63:
        name = f"envroute_changes_{hashlib.sha256(schema_name.encode()).hexdigest()[:32]}"
    return name


class NoAnswer(Exception):
    """A call the deadline cut off: the server accepted it and never answered."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresStore(SQLStore, InvalidationSource):
    """Keys in PostgreSQL; a connection pool and a ``LISTEN`` thread per process."""

    def __init__(self, url: str, *, pool_timeout: float = POOL_TIMEOUT,
                 max_size: int = POOL_MAX_SIZE, query_timeout: float = QUERY_TIMEOUT) -> None:
        self.url = url
        self.conninfo, self.schema = parse_url(url)
        self.channel = channel_name(self.schema)
        self.pool_timeout = pool_timeout
        self.query_timeout = query_timeout
        self.max_size = max_size
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pid = 0
        self._migrated_pid = 0
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[Change], None]] = []
        self._listener: Listener | None = None
        self._rendered: dict[str, str] = {}
        self._names = {alias: self._table(table) for alias, table in TABLES.items()}

    # -- SQL ------------------------------------------------------------------------------

    def _table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name) if self.schema else sql.Identifier(name)

    def _sql(self, template: str) -> str:
        rendered = self._rendered.get(template)
        if rendered is None:
            rendered = sql.SQL(template).format(**self._names).as_string()
            self._rendered[template] = rendered
        return rendered

    def _time(self, value: datetime | None) -> Any:
        return value

    def _json(self, value: Mapping[str, Any]) -> Any:
        return Jsonb(dict(value))

    def _list(self, value: Sequence[str]) -> Any:
        return list(value)

    def _day(self, value: date) -> Any:
        return value

    # -- connections ----------------------------------------------------------------------

    def _configure(self, connection: psycopg.Connection[Any]) -> None:
        timeout = int(self.query_timeout * 1000)
        connection.execute(f"SET statement_timeout = {timeout}")
        connection.commit()

    def _pool_for_process(self) -> ConnectionPool[psycopg.Connection[Any]]:
        pid = os.getpid()
        if self._pid != pid or self._pool is None:
            with self._lock:
                if self._pid != pid or self._pool is None:
                    # A pool inherited across fork belongs to the parent: never touch it.
                    self._pool = ConnectionPool(
                        self.conninfo, min_size=POOL_MIN_SIZE, max_size=self.max_size,
                        timeout=self.pool_timeout, reconnect_timeout=RECONNECT_TIMEOUT,
                        kwargs=dict(KEEPALIVES), configure=self._configure,
                        open=False, name="envroute",
                    )
                    self._pool.open(wait=False)
                    self._pid = pid
                    self._listener = None
        if self._callbacks and (self._listener is None or self._listener.pid != pid):
            self._start_listener()
        return self._pool

    @contextmanager
    def _connection(self, seconds: float) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection whose use is cut off after ``seconds``: the error of a
        call cut off is :class:`NoAnswer` (never retried: the server is not answering)."""
        pool = self._pool_for_process()
        self._migrate_once()
        with pool.connection() as connection:
            fileno = connection.fileno()
            with WATCHDOG.guard(seconds, lambda: sever(fileno)) as deadline:
                try:
                    yield connection
                except psycopg.OperationalError as exc:
                    if deadline.fired:
                        raise NoAnswer(f"no answer within {seconds:g} s") from exc
                    raise

    @contextmanager
    def _transaction(self, *, write: bool = False,
                     change: Change | None = None) -> Iterator[Cursor]:
        try:
            with self._connection(self.query_timeout + GRACE) as connection, \
                    connection.transaction(), connection.cursor(row_factory=dict_row) as cursor:
                yield cursor
                if change is not None:
                    cursor.execute("SELECT pg_notify(%s, %s)", (self.channel, payload(change)))
        except (psycopg.Error, NoAnswer) as exc:
            raise StoreUnavailable(f"PostgreSQL store: {first_line(exc)}") from exc

    def _all(self, template: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        """A read, retried when its connection turned out broken (the server restarted,
        or every connection was reset, since it was pooled; the pool discards each such
        connection). Every pooled connection may be dead, so up to one retry per
        connection the pool can hold: a dead connection fails at once, and a server that
        does not answer is a deadline or a pool timeout, which are not retried."""
        attempts = self.max_size + 1
        for attempt in range(attempts):
            try:
                return super()._all(template, params)
            except StoreUnavailable as exc:
                cause = exc.__cause__
                retry = (isinstance(cause, psycopg.OperationalError)
                         and not isinstance(cause, PoolTimeout)
                         and not isinstance(cause, psycopg.errors.QueryCanceled))
                if not retry or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _lock_key(self, cursor: Cursor, key_id: str) -> None:
        cursor.execute(self._sql("SELECT id FROM {keys} WHERE id = %s FOR UPDATE"), (key_id,))
        super()._lock_key(cursor, key_id)

    # -- the schema -----------------------------------------------------------------------

    def _migrate_once(self) -> None:
        """Once per process, on a connection of its own (not the pool's), so a server
        that refuses says why (refused, no such database, no such role) instead of the
        pool's "couldn't get a connection"."""
        pid = os.getpid()
        if self._migrated_pid == pid:
            return
        with psycopg.connect(make_conninfo(self.conninfo, **KEEPALIVES)) as connection:
            fileno = connection.fileno()
            with WATCHDOG.guard(MIGRATE_TIMEOUT, lambda: sever(fileno)):
                self._migrate(connection)
        self._migrated_pid = pid

    def _migrate(self, connection: psycopg.Connection[Any]) -> None:
        version_table = self._table("envroute_schema_version")
        with connection.transaction():
            connection.execute(f"SET LOCAL statement_timeout = {int(MIGRATE_TIMEOUT * 1000)}")
            lock_name = f"envroute.migrate:{self.schema}"
            connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_name,))
            if self.schema:
                connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(self.schema)))
            connection.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} "
                                       "(version INTEGER NOT NULL)").format(version_table))
            row = connection.execute(
                sql.SQL("SELECT version FROM {}").format(version_table)).fetchone()
            version = row[0] if row else 0
            if row is None:
                connection.execute(sql.SQL("INSERT INTO {} VALUES (0)").format(version_table))
            if version > schema.VERSION:
                raise psycopg.DataError(f"schema version {version} is newer than this "
                                        f"envroute supports ({schema.VERSION}); upgrade it")
            for number, step in enumerate(schema.STEPS[version:], start=version + 1):
                for statement in schema.render(
                        step, "postgresql", table=lambda name: self._table(name).as_string(),
                        name=lambda name: sql.Identifier(name).as_string()):
                    connection.execute(statement)
                connection.execute(sql.SQL("UPDATE {} SET version = %s").format(version_table),
                                   (number,))

    def migrate(self) -> None:
        with self._transaction():
            pass

    def schema_version(self) -> int:
        found = self._all(sql.SQL("SELECT version FROM {}").format(
            self._table("envroute_schema_version")).as_string())
        return int(found[0]["version"]) if found else 0

    def close(self) -> None:
        """Stop this process's listener, close its pool and end the subscriptions (a
        store used again after ``close()`` reconnects, without listening)."""
        self._callbacks = []
        listener, self._listener = self._listener, None
        if listener is not None and listener.pid == os.getpid():
            listener.stop()
        pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close()
        self._pid = 0
        self._migrated_pid = 0

    # -- changes --------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback(change)`` on every change, from any process or host, and
        ``callback(Change("all"))`` after the listener (re)connects, when some may have
        been missed. The listener starts with this process's next use of the store."""
        self._callbacks.append(callback)

    def _start_listener(self) -> None:
        with self._lock:
            pid = os.getpid()
            if self._listener is not None and self._listener.pid == pid:
                return
            self._listener = Listener(self.conninfo, self.channel, self._notify)
            self._listener.start()

    def _notify(self, change: Change) -> None:
        for callback in list(self._callbacks):
            try:
                callback(change)
            except Exception:  # one bad subscriber must not stop the listener
                logger.exception("change callback failed")
