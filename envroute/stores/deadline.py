"""A deadline for every call on an open database connection (issue 16: no hang).

PostgreSQL's ``statement_timeout`` stops a slow query on a healthy server, and libpq's
``connect_timeout`` bounds a new connection; neither helps when the server (or a
firewall, or a failed-over address) accepts bytes and never answers: the client waits on
its socket forever, and with it every request that missed the cache. :class:`Watchdog`
is one daemon thread per process holding the deadlines of the calls in flight; when one
passes, it shuts the connection's socket down, so the waiting call fails at once with the
driver's own "connection lost" error (answered ``503 store_unavailable``) and the pool
discards the connection.

Cost: a guarded call takes a lock and pushes onto a heap; no thread is started per call.
Risk: a deadline shorter than a legitimate call (a migration) cuts it off; such calls
ask for a longer one.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass(order=True)
class _Entry:
    deadline: float
    number: int
    expire: Callable[[], None] = field(compare=False)
    active: bool = field(default=True, compare=False)
    #: set when the deadline passed while the block still ran
    fired: bool = field(default=False, compare=False)


class Watchdog:
    """Calls ``expire()`` of every guarded block still running at its deadline."""

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._condition = threading.Condition()
        self._numbers = itertools.count()
        self._pid = 0

    @contextlib.contextmanager
    def guard(self, seconds: float, expire: Callable[[], None]) -> Iterator[_Entry]:
        """Run the block; ``expire()`` if it is still running after ``seconds``. The
        entry's ``fired`` says afterwards whether it was cut off."""
        entry = _Entry(time.monotonic() + seconds, next(self._numbers), expire)
        with self._condition:
            self._start()
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._condition.notify()
        try:
            yield entry
        finally:
            with self._condition:
                entry.active = False

    def _start(self) -> None:
        if self._pid != os.getpid():  # a forked child has no thread: start its own
            self._heap = []
            threading.Thread(target=self._run, name="envroute-deadlines", daemon=True).start()
            self._pid = os.getpid()

    def _run(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                while self._heap and (not self._heap[0].active
                                      or self._heap[0].deadline <= now):
                    entry = heapq.heappop(self._heap)
                    if entry.active:
                        entry.active = False
                        entry.fired = True
                        with contextlib.suppress(Exception):
                            entry.expire()
                timeout = self._heap[0].deadline - now if self._heap else None
                self._condition.wait(timeout)


def sever(fileno: int) -> None:
    """Shut down the socket behind ``fileno``: a call blocked on it returns at once."""
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(fileno))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


#: The process's watchdog (its thread starts with the first guarded call).
WATCHDOG = Watchdog()
