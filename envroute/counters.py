"""The counters behind rate limits: one call per request, whatever the number of rules.

A request checks a list of :class:`Check` (one per limit of every matching rule) in one
:meth:`Counter.acquire`: in order, each is tested and counted, and the first that is over
its limit stops the walk (the ones before it stay counted, as they always were). The
answer holds, for each limit walked, what the ``RateLimit-*`` headers need.

- :class:`MemoryCounter`: per process, under one lock, with plain dicts and deques; idle
  keys are swept now and then so memory follows the active subjects, not all ever seen.
- :class:`RedisCounter`: one Lua script, so the whole request is one Redis round trip
  (``EVALSHA``; the script is loaded once per connection pool). Shared by every worker of
  every gateway. Keys of the sliding-window counter are derived inside the script, so it
  needs a single Redis (or a cluster with one hash slot per subject), not a cluster.

The three strategies follow ``limits``: a moving window counts the hits of the last
``window`` seconds; a fixed window counts from the first hit for ``window`` seconds (a
refused hit still counts, as in ``limits``); a sliding-window counter weighs the previous
aligned window by how much of it still overlaps.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from .errors import StoreUnavailable

#: Sweep idle memory keys after this many acquisitions.
SWEEP_EVERY = 4096


class Check(NamedTuple):
    key: str
    limit: int
    window: int  # seconds


class Outcome(NamedTuple):
    """``refused``: index of the check over its limit (-1: none). ``stats``: (remaining,
    reset at as a UNIX time) of every check walked, the refused one included."""

    refused: int
    stats: list[tuple[int, float]]


class Counter(Protocol):
    def acquire(self, checks: Sequence[Check], now: float, dry_run: bool) -> Outcome: ...

    def close(self) -> None: ...


class MemoryCounter:
    """All three strategies in this process's memory, under one lock."""

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {}
        self._until_sweep = SWEEP_EVERY
        self._step = {"moving-window": self._moving, "fixed-window": self._fixed,
                      "sliding-window-counter": self._sliding}[strategy]

    def acquire(self, checks: Sequence[Check], now: float, dry_run: bool) -> Outcome:
        stats: list[tuple[int, float]] = []
        step = self._step
        with self._lock:
            self._until_sweep -= 1
            if self._until_sweep <= 0:
                self._sweep(now)
            for index, check in enumerate(checks):
                allowed, remaining, reset = step(check, now, dry_run)
                stats.append((remaining, reset))
                if not allowed:
                    return Outcome(index, stats)
        return Outcome(-1, stats)

    def _moving(self, check: Check, now: float, dry_run: bool) -> tuple[bool, int, float]:
        hits: deque[float] | None = self._state.get(check.key)
        if hits is None:
            hits = self._state[check.key] = deque()
        start = now - check.window
        while hits and hits[0] <= start:
            hits.popleft()
        allowed = len(hits) < check.limit
        if allowed and not dry_run:
            hits.append(now)
        count = len(hits) + (1 if allowed and dry_run else 0)
        oldest = hits[0] if hits else now
        return allowed, check.limit - count, oldest + check.window

    def _fixed(self, check: Check, now: float, dry_run: bool) -> tuple[bool, int, float]:
        state: list[float] | None = self._state.get(check.key)
        if state is None or now >= state[1]:
            state = self._state[check.key] = [0, now + check.window]
        if dry_run:
            allowed = state[0] < check.limit
            count = int(state[0]) + (1 if allowed else 0)
        else:
            state[0] += 1
            count = int(state[0])
            allowed = count <= check.limit
        return allowed, max(0, check.limit - count), state[1]

    def _sliding(self, check: Check, now: float, dry_run: bool) -> tuple[bool, int, float]:
        window = check.window
        current = math.floor(now / window)
        state: list[int] | None = self._state.get(check.key)
        if state is None or state[0] < current - 1:
            state = self._state[check.key] = [current, 0, 0]  # window, previous, current
        elif state[0] == current - 1:
            state[:] = [current, state[2], 0]
        weight = (window - (now - current * window)) / window
        weighted = state[1] * weight + state[2]
        allowed = weighted + 1 <= check.limit
        if allowed:
            weighted += 1
            if not dry_run:
                state[2] += 1
        end = (current + 1) * window
        reset = now + min(window / state[1], end - now) if state[1] else end
        return allowed, max(0, math.floor(check.limit - weighted)), reset

    def _sweep(self, now: float) -> None:
        """Forget keys with nothing left to count (bounded memory for idle subjects)."""
        self._until_sweep = SWEEP_EVERY
        idle = []
        for key, state in self._state.items():
            if isinstance(state, deque):
                if not state or state[-1] <= now - _window_of(key):
                    idle.append(key)
            elif isinstance(state, list) and len(state) == 2:
                if now >= state[1]:
                    idle.append(key)
            elif (state[0] + 2) * _window_of(key) <= now:
                idle.append(key)
        for key in idle:
            del self._state[key]

    def close(self) -> None:
        with self._lock:
            self._state.clear()


def _window_of(key: str) -> int:
    """Keys end in ``/<window seconds>``; see :func:`envroute.ratelimit` key layout."""
    return int(key.rpartition("/")[2])


_SCRIPT = """
local now = tonumber(ARGV[1])
local dry = ARGV[2] == '1'
local strategy = ARGV[3]
local nonce = ARGV[4]
local out = {0}
for i = 1, #KEYS do
  local key = KEYS[i]
  local limit = tonumber(ARGV[3 + 2 * i])
  local window = tonumber(ARGV[4 + 2 * i])
  local allowed, remaining, reset
  if strategy == 'moving-window' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    local count = redis.call('ZCARD', key)
    allowed = count < limit
    if allowed then
      count = count + 1
      if not dry then
        redis.call('ZADD', key, now, nonce .. ':' .. i)
        redis.call('EXPIRE', key, window + 1)
      end
    end
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local oldest = now
    if first[2] then oldest = tonumber(first[2]) end
    remaining = limit - count
    reset = oldest + window
  elseif strategy == 'fixed-window' then
    local finish = tonumber(redis.call('HGET', key, 'until') or '0')
    if now >= finish then
      finish = now + window
      redis.call('HSET', key, 'n', 0, 'until', finish)
      redis.call('EXPIRE', key, window + 1)
    end
    local count
    if dry then
      count = tonumber(redis.call('HGET', key, 'n'))
      allowed = count < limit
      if allowed then count = count + 1 end
    else
      count = redis.call('HINCRBY', key, 'n', 1)
      allowed = count <= limit
    end
    reset = finish
    remaining = math.max(0, limit - count)
  else
    local current = math.floor(now / window)
    local current_key = key .. ':' .. current
    local previous = tonumber(redis.call('GET', key .. ':' .. (current - 1)) or '0')
    local count = tonumber(redis.call('GET', current_key) or '0')
    local weighted = previous * (window - (now - current * window)) / window + count
    allowed = weighted + 1 <= limit
    if allowed then
      weighted = weighted + 1
      if not dry then
        redis.call('INCR', current_key)
        redis.call('EXPIRE', current_key, 2 * window)
      end
    end
    local finish = (current + 1) * window
    if previous > 0 then reset = now + math.min(window / previous, finish - now)
    else reset = finish end
    remaining = math.max(0, math.floor(limit - weighted))
  end
  out[#out + 1] = remaining
  out[#out + 1] = math.floor(reset * 1000)
  if not allowed then
    out[1] = i
    return out
  end
end
return out
"""


class RedisCounter:
    """All three strategies in Redis, one ``EVALSHA`` per request."""

    def __init__(self, url: str, strategy: str, *, prefix: str, timeout: float) -> None:
        import redis

        if url.startswith("redis+unix://"):
            url = "unix://" + url[len("redis+unix://"):]
        self.strategy = strategy
        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_timeout=timeout,
                                           socket_connect_timeout=timeout)
        self.script = self.client.register_script(_SCRIPT)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    def acquire(self, checks: Sequence[Check], now: float, dry_run: bool) -> Outcome:
        keys = [f"{self.prefix}:{check.key}" for check in checks]
        args: list[Any] = [repr(now), "1" if dry_run else "0", self.strategy,
                           secrets.token_hex(8)]
        for check in checks:
            args.extend((check.limit, check.window))
        try:
            reply = self.script(keys=keys, args=args)
        except self._errors as exc:
            raise StoreUnavailable(f"rate-limit storage unavailable: "
                                   f"{type(exc).__name__}: {exc}") from exc
        values = [int(v) for v in reply]
        stats = [(values[i], values[i + 1] / 1000) for i in range(1, len(values), 2)]
        return Outcome(values[0] - 1, stats)

    def close(self) -> None:
        self.client.close()
