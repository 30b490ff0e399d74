"""The default key store: one SQLite file in WAL mode.

Why it holds up under gunicorn: each process opens its own connections after the fork
(never inherited), each thread gets its own connection, WAL lets readers run beside the
single writer, and ``busy_timeout`` makes a writer wait rather than fail while another
process writes. Migrations run in one ``BEGIN IMMEDIATE`` transaction keyed on
``PRAGMA user_version``, so several workers starting at once migrate exactly once; a
store made by envroute 0.1 (version 1) is migrated in place on first use.

Changes reach the other processes on the machine through a change marker next to the
file (:mod:`envroute.stores.marker`): within about a second, never a query per request.
Writes are short transactions; the usage flush runs on the authenticator's timer thread,
so a request never waits on the write lock for it.

Every :mod:`sqlite3` error is re-raised as :class:`~envroute.errors.StoreUnavailable`:
a missing directory, a file that is not a database or a locked disk all answer 503.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StoreUnavailable
from . import rows, schema
from .base import Change, InvalidationSource
from .marker import ChangeMarker
from .sql import SQLStore
from .sqlcore import TABLES, Cursor

BUSY_TIMEOUT_MS = 5000


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


def _quote(name: str) -> str:
    return f'"{name}"'


def migrations() -> list[list[str]]:
    """The schema's steps as SQLite statements (step N takes version N-1 to N)."""
    return [schema.render(step, "sqlite", table=_quote, name=_quote) for step in schema.STEPS]


class _Held:
    """One thread's connection, closed when that thread's state is dropped (the thread
    ended, the store was closed or dropped), not left to the garbage collector."""

    __slots__ = ("__weakref__", "close", "connection", "pid")

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.pid = os.getpid()
        self.close = weakref.finalize(self, connection.close)


class SQLiteStore(SQLStore, InvalidationSource):
    """Keys in a SQLite file; one connection per thread per process, opened lazily.

    Each connection is used only by the thread that opened it, and closed, never left to
    the garbage collector (Python 3.13 warns of each such ``unclosed database``): when its
    thread ends (a server with a thread per request opens one per request), and all of
    them at :meth:`close` or when the store is dropped. A forked child opens its own.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = str(Path(path_from_url(url)))
        self.marker = ChangeMarker(self.path + ".changes")
        self._local = threading.local()
        self._migrated_pid = 0
        self._lock = threading.Lock()
        #: every thread's connection, for :meth:`close`
        self._held: weakref.WeakSet[_Held] = weakref.WeakSet()
        self._rendered: dict[str, str] = {}
        self._names = {alias: _quote(table) for alias, table in TABLES.items()}

    # -- SQL ------------------------------------------------------------------------------

    def _sql(self, template: str) -> str:
        rendered = self._rendered.get(template)
        if rendered is None:
            rendered = template.format(**self._names).replace("%s", "?")
            self._rendered[template] = rendered
        return rendered

    def _time(self, value: datetime | None) -> Any:
        return rows.utc_text(value)

    def _day(self, value: date) -> Any:
        return value.isoformat()

    # -- connections ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread off only so that close() may close every thread's connection;
        # the thread-local hands each connection to its own thread alone
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                     isolation_level=None, check_same_thread=False)
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA foreign_keys = ON")
        except BaseException:  # not a database, or locked: this connection is no use
            connection.close()
            raise
        connection.row_factory = sqlite3.Row
        return connection

    def _connection(self) -> sqlite3.Connection:
        pid = os.getpid()
        local = self._local
        if getattr(local, "pid", None) != pid:  # new thread, or a forked child
            held = local.held = _Held(self._connect())
            with self._lock:  # (close() reads the set from another thread)
                self._held.add(held)
            local.connection = held.connection
            local.pid = pid
        if self._migrated_pid != pid:
            with self._lock:
                if self._migrated_pid != pid:
                    self._migrate(local.connection)
                    self._migrated_pid = pid
        self.marker.watch()
        connection: sqlite3.Connection = local.connection
        return connection

    @contextmanager
    def _transaction(self, *, write: bool = False,
                     change: Change | None = None) -> Iterator[Cursor]:
        try:
            cursor = self._connection().cursor()
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
        if change is not None:
            self.marker.bump()

    def _migrate(self, connection: sqlite3.Connection) -> None:
        steps = migrations()
        version = connection.execute("PRAGMA user_version").fetchone()["user_version"]
        if version == len(steps):
            return
        if version > len(steps):
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this "
                                        f"envroute supports ({len(steps)}); upgrade it")
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()["user_version"]
            for number, statements in enumerate(steps[version:], start=version + 1):
                for statement in statements:
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {number}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def migrate(self) -> None:
        with self._transaction():
            pass

    def schema_version(self) -> int:
        with self._transaction() as cursor:
            row = cursor.execute("PRAGMA user_version").fetchone()
            assert row is not None
            return int(row["user_version"])

    def close(self) -> None:
        with self._lock:
            held = [h for h in list(self._held) if h.pid == os.getpid()]
            self._local = threading.local()
        for one in held:
            one.close()
        self.marker.stop()

    # -- changes --------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Change], None]) -> None:
        """``callback(Change("all"))`` within about a second of any change made by any
        process on this machine; the watcher starts with this process's next use."""
        self.marker.subscribe(callback)
