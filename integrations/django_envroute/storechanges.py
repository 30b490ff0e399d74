"""How a change made through the ``django://`` store reaches every process (contract §11).

On PostgreSQL each change sends ``NOTIFY`` on :data:`CHANNEL` inside the change's own
transaction (so it is heard only if the change commits), and one ``LISTEN`` thread per
process hears it, exactly as the ``postgresql://`` store does: every worker of every
gateway. On any other database a change marker file (:mod:`envroute.stores.marker`) is
bumped after the commit and watched by every process on the machine.

:class:`ChangeFeed` is one store's half of that: the subscribers, and the listener or marker
watcher, started lazily by the process's next use of the store (so after gunicorn's fork).
Risk: the marker reaches only processes on the same machine; several hosts sharing one
non-PostgreSQL database fall back to ``cache_ttl``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from typing import Any

from django.db import connections, transaction

from envroute.stores.base import Change
from envroute.stores.marker import ChangeMarker

CHANNEL = "envroute_changes"


class ChangeFeed:
    """The changes of the Django database ``alias``: :meth:`announce` one inside its
    transaction, :meth:`subscribe` to hear those of every process."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._callbacks: list[Callable[[Change], None]] = []
        self._marker: ChangeMarker | None = None
        self._listener: Any = None
        self._lock = threading.Lock()

    def _postgres(self) -> bool:
        return bool(connections[self.alias].vendor == "postgresql")

    def subscribe(self, callback: Callable[[Change], None]) -> None:
        """Changes from every process (every host, on PostgreSQL); the listener or the
        marker watcher starts with this process's next use of the store."""
        self._callbacks.append(callback)

    def announce(self, change: Change) -> None:
        """Inside the change's transaction: sent (or the marker bumped) once it commits."""
        if self._postgres():
            from envroute.stores.pglisten import payload

            with connections[self.alias].cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload(change)])
        else:
            marker = self._marker_for_database()
            transaction.on_commit(marker.bump, using=self.alias)

    def _marker_for_database(self) -> ChangeMarker:
        if self._marker is None:
            self._marker = ChangeMarker(marker_path(connections[self.alias].settings_dict))
            self._marker.subscribe(self._notify)
        return self._marker

    def watch(self) -> None:
        """Start this process's listener or marker watcher, if anyone subscribed."""
        if not self._callbacks:
            return
        if not self._postgres():
            self._marker_for_database().watch()
            return
        pid = os.getpid()
        if self._listener is not None and self._listener.pid == pid:
            return
        with self._lock:
            if self._listener is None or self._listener.pid != pid:
                from envroute.stores.pglisten import Listener

                self._listener = Listener(
                    "", CHANNEL, self._notify,
                    connect_kwargs=connect_params(connections[self.alias].settings_dict))
                self._listener.start()

    def _notify(self, change: Change) -> None:
        """On the listener's (or watcher's) thread: a subscriber that reloads from the
        store (stored backends) opens a Django connection on this thread, closed here,
        since no request's end will close it."""
        try:
            for callback in list(self._callbacks):
                try:
                    callback(change)
                except Exception:  # one bad subscriber must not stop the listener
                    logging.getLogger("envroute").exception("change callback failed")
        finally:
            if threading.current_thread() is not threading.main_thread():
                connections.close_all()

    def close(self) -> None:
        """Stop this process's listener or watcher and end the subscriptions."""
        self._callbacks = []
        listener, self._listener = self._listener, None
        if listener is not None and listener.pid == os.getpid():
            listener.stop()
        if self._marker is not None:
            self._marker.stop()


def marker_path(settings_dict: Mapping[str, Any]) -> str:
    """Next to a SQLite file; for another database, in the temporary directory, named
    after the database (every process on the machine that uses it finds the same file)."""
    name = str(settings_dict.get("NAME") or "")
    if settings_dict.get("ENGINE", "").endswith("sqlite3") and name and ":memory:" not in name \
            and not name.startswith("file:"):
        return f"{name}.changes"
    where = "|".join(str(settings_dict.get(part) or "") for part in
                     ("ENGINE", "HOST", "PORT", "NAME"))
    digest = hashlib.sha256(where.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"envroute-{digest}.changes")


def connect_params(settings_dict: Mapping[str, Any]) -> dict[str, Any]:
    """libpq parameters of a Django PostgreSQL database, for the LISTEN connection."""
    params: dict[str, Any] = {"dbname": settings_dict.get("NAME") or "postgres",
                              "connect_timeout": "3", "application_name": "envroute"}
    for setting, name in (("USER", "user"), ("PASSWORD", "password"), ("HOST", "host"),
                          ("PORT", "port")):
        if settings_dict.get(setting):
            params[name] = str(settings_dict[setting])
    for option, value in (settings_dict.get("OPTIONS") or {}).items():
        if isinstance(value, (str, int)) and option not in (
                "isolation_level", "server_side_binding", "assume_role", "pool"):
            params[option] = str(value)
    return params


__all__ = ["CHANNEL", "ChangeFeed", "connect_params", "marker_path"]
