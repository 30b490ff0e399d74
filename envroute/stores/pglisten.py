"""The PostgreSQL ``LISTEN`` thread: changes from every gateway, within about a second.

Each write that changes a key, customer or stored backend sends, in its own transaction,
``NOTIFY <channel>, '<kind>:<target>'`` (``key:key_…``, ``customer:acme``,
``backend:dedicated-1``). One daemon thread per process listens on the channel and calls
the store's subscribers with the matching :class:`~envroute.stores.base.Change`. The
channel is scoped by the store's schema, so stores in different schemas of one database
never hear each other.

Faults (issue 16): the connection has TCP keepalives, and a heartbeat query every
:data:`HEARTBEAT` seconds under a deadline notices a server that stopped answering. After
every (re)connect the subscribers get ``Change("all")``: a NOTIFY sent while the thread was
deaf is lost, so what the process cached meanwhile is dropped. The reconnect back-off
starts again from :data:`BACKOFF_MIN` after every successful connection, so a second
outage is recovered from as fast as the first.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, cast, get_args

import psycopg
from psycopg import sql

from .base import Change, ChangeKind
from .deadline import WATCHDOG, sever

logger = logging.getLogger("envroute")

#: libpq TCP keepalives: a dead peer is noticed in about 20 s even with no traffic.
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "3",
              "keepalives_count": "3"}
HEARTBEAT = 2.0
#: How long the heartbeat may take before the connection counts as lost.
HEARTBEAT_TIMEOUT = 2.0
BACKOFF_MIN = 0.1
BACKOFF_MAX = 2.0
KINDS = frozenset(get_args(ChangeKind))


def payload(change: Change) -> str:
    return f"{change.kind}:{change.target or ''}"


def parse_payload(text: str) -> Change:
    """``key:key_1`` -> ``Change("key", "key_1")``; anything unknown is ``Change("all")``."""
    kind, _, target = text.partition(":")
    if kind not in KINDS or kind == "all" or not target:
        return Change("all")
    return Change(cast(ChangeKind, kind), target)


class Listener:
    """One daemon thread per process: ``LISTEN channel``, reconnecting with back-off."""

    def __init__(self, conninfo: str, channel: str, notify: Callable[[Change], None],
                 connect_kwargs: dict[str, Any] | None = None) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.notify = notify
        self.connect_kwargs = {**KEEPALIVES, **(connect_kwargs or {})}
        self.pid = os.getpid()
        self.connected = threading.Event()
        self._reported = False  # the current loss has been logged (once per outage)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="envroute-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        """Reconnect with back-off. An outage is one warning when it starts and one line when
        it ends: a retry per back-off step at warning level was a line every few seconds per
        worker for as long as the server refused (the one-line-per-failure rule, §10)."""
        delay = BACKOFF_MIN
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                text = str(exc).strip()
                cause = text.splitlines()[0] if text else str(exc)
                if self.connected.is_set() or not self._reported:
                    self._reported = True
                    logger.warning("PostgreSQL LISTEN %s lost (%s); reconnecting with back-off",
                                   self.channel, cause)
                else:
                    logger.debug("PostgreSQL LISTEN %s still lost (%s); next try in %.1fs",
                                 self.channel, cause, delay)
            if self.connected.is_set():  # it worked until now: start the back-off again
                self.connected.clear()
                delay = BACKOFF_MIN
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, BACKOFF_MAX)

    def _listen(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True,
                             **self.connect_kwargs) as connection:
            fileno = connection.fileno()
            with WATCHDOG.guard(HEARTBEAT_TIMEOUT, lambda: sever(fileno)):
                connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self.connected.set()
            if self._reported:
                self._reported = False
                logger.warning("PostgreSQL LISTEN %s back", self.channel)
            self.notify(Change("all"))  # whatever changed while we were not listening
            while not self._stop.is_set():
                for notification in connection.notifies(timeout=HEARTBEAT):
                    self.notify(parse_payload(notification.payload))
                # notice a silently dead connection, within a bounded time
                with WATCHDOG.guard(HEARTBEAT_TIMEOUT, lambda: sever(fileno)):
                    connection.execute("SELECT 1")
