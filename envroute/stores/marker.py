"""A change marker: how a store without a push channel tells every process "something
changed" within about a second (contract §11), for SQLite and non-PostgreSQL ``django://``.

The process that commits a change to a key, customer or stored backend writes a new
random token into a small file next to the database (``keys.db.changes``). Each process
runs one daemon thread, started lazily on its first use of such a store (after gunicorn's
fork), that reads every watched marker every :data:`POLL_INTERVAL` seconds and calls the
marker's subscribers with ``Change("all")`` when its token differs. The request path never
queries the store to find out: a cached verdict stays a dictionary look-up.

The thread holds markers weakly, so a store that is dropped without ``close()`` stops
being watched once it is collected. Risk: the marker only reaches processes on the same
machine (the file is local); a process that cannot write it logs one warning and the
others fall back to ``cache_ttl``.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import weakref
from collections.abc import Callable

from .base import Change

logger = logging.getLogger("envroute")

#: How often each process looks at the markers: changes reach it within this (plus a read).
POLL_INTERVAL = 0.2
TOKEN_BYTES = 16


class ChangeMarker:
    """The marker file at ``path``: :meth:`bump` after a commit, :meth:`subscribe` to hear."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._callbacks: list[Callable[[Change], None]] = []
        self._last = b""
        self._pid = 0
        self._warned = False

    def subscribe(self, callback: Callable[[Change], None]) -> None:
        self._callbacks.append(callback)

    def bump(self) -> None:
        """Tell every watching process that something changed (after the commit)."""
        token = secrets.token_hex(TOKEN_BYTES).encode()
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:  # one fixed-size write at offset 0: a reader never sees it empty
                os.pwrite(descriptor, token, 0)
            finally:
                os.close(descriptor)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning("cannot write the change marker %s (%s): other processes "
                               "notice changes only after cache_ttl", self.path, exc)

    def read(self) -> bytes:
        try:
            with open(self.path, "rb") as marker:
                return marker.read(TOKEN_BYTES * 2)
        except OSError:
            return b""

    def watch(self) -> None:
        """Have this process watch the marker if anyone subscribed (cheap when it does)."""
        pid = os.getpid()
        if not self._callbacks or self._pid == pid:
            return
        self._last = self.read()
        self._pid = pid
        _WATCHER.add(self)

    def stop(self) -> None:
        self._pid = 0
        _WATCHER.discard(self)

    def check(self) -> None:
        """One look: call the subscribers if the token changed since the last one."""
        token = self.read()
        if token == self._last:
            return
        self._last = token
        for callback in list(self._callbacks):
            try:
                callback(Change("all"))
            except Exception:  # one bad subscriber must not stop the watcher
                logger.exception("change callback failed")


class _Watcher:
    """One daemon thread per process, looking at every watched marker in turn."""

    def __init__(self) -> None:
        self._markers: weakref.WeakSet[ChangeMarker] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._pid = 0

    def add(self, marker: ChangeMarker) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child starts its own thread
                self._markers = weakref.WeakSet()
                threading.Thread(target=self._run, name="envroute-changes",
                                 daemon=True).start()
                self._pid = os.getpid()
            self._markers.add(marker)

    def discard(self, marker: ChangeMarker) -> None:
        with self._lock:
            self._markers.discard(marker)

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(POLL_INTERVAL):
            with self._lock:
                markers = list(self._markers)
            for marker in markers:
                marker.check()
            del markers


_WATCHER = _Watcher()
