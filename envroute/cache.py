"""A bounded least-recently-used map whose entries expire: what each process caches of the store.

The verifier keeps two of these (:mod:`envroute.auth`): one for keys the store knows
(verified, revoked, disabled, expired) and a smaller one for refusals of hashes the store
does not know. Both are bounded, so memory is too, and each evicts its least recently used
entry when full (``functools.lru_cache``'s policy, ``cachetools.TTLCache``'s expiry) rather
than clearing itself: 0.1 cleared its one cache once strangers filled it with made-up keys,
sending every verified key back to the store at once.

Reads take no lock: a hit is one ``dict`` look-up and one C-level ``move_to_end``, and a
concurrent eviction of the same entry is tolerated (the reader keeps the value it got).
Writes and invalidation take a lock, so an eviction never loses a newer entry.

The risk to keep in mind: an entry is trusted until it expires unless someone calls
:meth:`LRUCache.discard` / :meth:`LRUCache.clear`; the store's change notifications are
what make a revocation reach a process sooner than the TTL.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """At most ``maxsize`` entries, each trusted for ``ttl`` seconds after it was put.

    ``get`` returns None for a missing or expired entry (an expired one is left for the
    next ``put`` to replace or for eviction to drop: a read never writes but the recency).
    """

    __slots__ = ("_lock", "entries", "maxsize", "ttl")

    def __init__(self, maxsize: int, ttl: float) -> None:
        if maxsize < 1:
            raise ValueError("an LRU cache holds at least one entry")
        self.maxsize = maxsize
        self.ttl = ttl
        #: key -> (monotonic expiry, value), least recently used first. Read-only outside
        #: this class: the request path's cache hit reads it directly (issue 14)
        self.entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, now: float | None = None) -> V | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry[0] <= (time.monotonic() if now is None else now):
            return None
        try:  # noqa: SIM105 - contextlib.suppress costs more than the look-up itself
            self.entries.move_to_end(key)
        except KeyError:  # evicted or discarded by another thread meanwhile: still a hit
            pass
        return entry[1]

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        expires = time.monotonic() + (self.ttl if ttl is None else ttl)
        with self._lock:
            self.entries[key] = (expires, value)
            self.entries.move_to_end(key)
            while len(self.entries) > self.maxsize:
                self.entries.popitem(last=False)

    def discard(self, key: K) -> None:
        with self._lock:
            self.entries.pop(key, None)

    def discard_where(self, predicate: Callable[[V], bool]) -> int:
        """Drop every entry whose value ``predicate`` accepts; how many were dropped.

        A scan of the whole cache: for invalidation, which is rare, never per request.
        """
        with self._lock:
            doomed = [key for key, (_, value) in list(self.entries.items()) if predicate(value)]
            for key in doomed:
                del self.entries[key]
        return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        entry = self.entries.get(key)  # type: ignore[arg-type]
        return entry is not None and entry[0] > time.monotonic()
