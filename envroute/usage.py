"""Per-key usage, counted in memory and written in batches by a background timer (§16).

:class:`UsageRecorder` counts, per key and UTC day, the requests and the errors (answers
with status >= 400 after authentication) and remembers each key's latest use. A
:class:`Flusher` thread hands what was counted to ``store.write_usage`` every
:data:`FLUSH_SECONDS`, as one :class:`~envroute.stores.base.UsageBatch`, so a request never
writes to the store and never waits on a store's lock.

Why it is built this way, and the risks it answers:

- **Never at import, never in a request.** The thread starts lazily, on the first use in a
  process: gunicorn imports the app and then forks, and a thread started before the fork
  would not exist in the workers. Counts inherited across a fork belong to the parent and
  are dropped in the child, so nothing is counted twice.
- **Never dropped.** A batch the store refuses (down, locked, a deadlock victim) is kept
  and merged into the next attempt; :meth:`Flusher.close` (and, once a flusher has started,
  interpreter exit) writes what is pending. Counts are additive, so a retried batch never
  counts twice unless the store applied it *and* reported a failure.
- **Deterministic batches.** Keys and days are sorted, so every worker offers its rows to
  the store in the same order; the store writes them in that order (no deadlock between
  workers updating the same rows).

JWT identities have no key and are not counted.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import cast

from .errors import EnvrouteError
from .stores.base import KeyStore, UsageBatch

logger = logging.getLogger("envroute")

#: How often the background timer writes what was counted.
FLUSH_SECONDS = 5.0
#: ``date.fromordinal`` of day 0 of the Unix epoch, to count days as plain ints per request.
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class UsageRecorder:
    """Counts requests and errors per key per UTC day, and each key's latest use.

    ``record`` is on the hot path: one ``extend`` of a deque by ``(key id, error, time)``
    (atomic under the GIL, so no lock and no lost count, and the three stay together); the
    timer's :meth:`take` drains it three at a time and adds it up. The deque holds the
    items, not a tuple per request: tuples waiting for the timer would be objects the
    garbage collector tracks, and thousands of them set off its collections (a twentieth
    of a cached request's cost, issue 14); strings, bools and floats are not tracked.
    ``flush`` runs on the :class:`Flusher`'s thread (or at close), never in a request;
    flushes are one at a time (:attr:`_flushing`): two draining the deque at once would
    split a ``(key id, error, time)`` triple between them, and a failed batch kept by one
    could be overwritten by the other's.
    """

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._events: deque[str | bool | float] = deque()
        #: the hot path's way in: ``extend((key_id, error, time.time()))``
        self.extend = self._events.extend
        #: a batch the store refused, merged into the next attempt
        self._failed: UsageBatch | None = None
        self._failures = 0
        self._counts_unsupported = False
        self._flushing = threading.Lock()

    def record(self, key_id: str, error: bool) -> None:
        self.extend((key_id, error, time.time()))

    def forget(self) -> None:
        """Drop what is pending (in a forked child: the parent writes it)."""
        self._events.clear()
        self._failed = None
        self._flushing = threading.Lock()  # the parent's timer may have held it at the fork

    def take(self) -> UsageBatch:
        """What was counted since the last take, merged with a failed batch, in order."""
        last_used: dict[str, float] = {}
        counts: dict[tuple[str, int], list[int]] = {}
        popleft = self._events.popleft
        while True:
            try:
                key_id = cast(str, popleft())
            except IndexError:
                break
            error, at = bool(popleft()), cast(float, popleft())  # extended together
            if last_used.get(key_id, 0.0) < at:
                last_used[key_id] = at
            slot = (key_id, int(at // 86400))
            count = counts.get(slot)
            if count is None:
                counts[slot] = [1, int(error)]
            else:
                count[0] += 1
                count[1] += error
        merged_used = {k: datetime.fromtimestamp(t, UTC) for k, t in last_used.items()}
        merged_counts = {(k, date.fromordinal(_EPOCH_ORDINAL + day)): (c[0], c[1])
                         for (k, day), c in counts.items()}
        failed, self._failed = self._failed, None
        if failed is not None:
            for key, moment in failed.last_used.items():
                if key not in merged_used or merged_used[key] < moment:
                    merged_used[key] = moment
            for day_slot, (requests, errors) in failed.counts.items():
                old = merged_counts.get(day_slot, (0, 0))
                merged_counts[day_slot] = (old[0] + requests, old[1] + errors)
        return UsageBatch(last_used=dict(sorted(merged_used.items())),
                          counts=dict(sorted(merged_counts.items())))

    def flush(self) -> bool:
        """Write what is pending in one batch; False (and the batch kept) if it failed."""
        with self._flushing:
            return self._flush()

    def _flush(self) -> bool:
        batch = self.take()
        if not batch:
            return True
        try:
            self._write(batch)
        except (EnvrouteError, OSError) as exc:  # kept for the next attempt, never dropped
            self._failed = batch
            self._failures += 1
            if self._failures == 1:  # once when an outage starts, not on every tick
                logger.warning("could not write key usage (%d keys); keeping it and "
                               "retrying every few seconds: %s", len(batch.last_used), exc)
            return False
        if self._failures:
            logger.warning("key usage written again after %d failed attempts; nothing lost",
                           self._failures)
            self._failures = 0
        return True

    def _write(self, batch: UsageBatch) -> None:
        if not self._counts_unsupported:
            try:
                self.store.write_usage(batch)
                return
            except NotImplementedError:  # a store written for 0.1: last_used_at only
                self._counts_unsupported = True
                logger.warning("the key store %s does not count usage per day "
                               "(no write_usage); only last_used_at is written",
                               type(self.store).__name__)
        self.store.record_usage(batch.last_used)

    @property
    def pending(self) -> bool:
        return bool(self._events or self._failed)


class Flusher:
    """A daemon thread that calls each task every ``interval`` seconds, started lazily.

    :meth:`ensure_started` is cheap after the first call (one attribute test); it starts the
    thread in the current process, so after a fork each worker starts its own. Every
    started flusher is flushed once more at interpreter exit (a gunicorn worker recycled),
    registered when the first one starts, never at import. Tasks return False when they
    could not finish; they are tried again on the next tick.
    """

    def __init__(self, tasks: list[Callable[[], object]],
                 interval: float = FLUSH_SECONDS) -> None:
        self.tasks = tasks
        self.interval = interval
        self.started = False
        self._pid = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run_lock = threading.Lock()

    def ensure_started(self) -> None:
        if self.started:
            return
        with self._run_lock:
            if self.started and self._pid == os.getpid():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=_loop, args=(weakref.ref(self), self._stop, self.interval),
                name="envroute-flush", daemon=True)
            self._pid = os.getpid()
            self.started = True
            _watch(self)
            self._thread.start()

    def run_once(self) -> None:
        """Run every task once now (the timer's tick; tests call it to avoid waiting)."""
        with self._run_lock:
            for task in self.tasks:
                try:
                    task()
                except Exception:  # a flush must never kill the timer
                    logger.exception("background flush failed")

    def close(self, timeout: float = 10.0) -> None:
        """Stop the timer and run the tasks a last time, in this thread."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread() \
                and self._pid == os.getpid():
            thread.join(timeout)
        self.started = False
        self.run_once()

    def _after_fork(self) -> None:
        """In a forked child: the parent's thread is not here, and nor is its lock's owner."""
        self.started = False
        self._thread = None
        self._run_lock = threading.Lock()


def _loop(ref: weakref.ref[Flusher], stop: threading.Event, interval: float) -> None:
    """The timer: holds its flusher weakly, so a gateway dropped without ``close()`` does
    not keep a thread (and a store connection) alive forever."""
    while not stop.wait(interval):
        flusher = ref()
        if flusher is None:
            return
        flusher.run_once()
        del flusher


# -- process-wide hooks, installed when the first flusher starts (never at import) -----------

_flushers: weakref.WeakSet[Flusher] = weakref.WeakSet()
_forget_after_fork: weakref.WeakSet[UsageRecorder] = weakref.WeakSet()
_hooks_installed = False


def _watch(flusher: Flusher) -> None:
    global _hooks_installed
    _flushers.add(flusher)
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_flush_at_exit)
        os.register_at_fork(after_in_child=_after_fork_in_child)


def forget_after_fork(recorder: UsageRecorder) -> None:
    """Drop ``recorder``'s counts in a forked child: they are its parent's to write."""
    _forget_after_fork.add(recorder)


def _after_fork_in_child() -> None:
    for flusher in list(_flushers):
        flusher._after_fork()
    for recorder in list(_forget_after_fork):
        recorder.forget()


def _flush_at_exit() -> None:
    for flusher in list(_flushers):
        if flusher.started and flusher._pid == os.getpid():
            with contextlib.suppress(Exception):  # the interpreter is going away
                flusher.close(timeout=2.0)
