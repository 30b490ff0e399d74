"""Rate limits: per key, per environment, per customer, per metadata value.

Each ``[[rate_limits.rules]]`` entry applies to the identities its ``when`` matches (the
routes' matcher, with the routes' attribute index, so many per-customer rules cost what a
few do) and to the requests its ``request`` matches (§14), and counts per ``per``:
``"key"`` (the key id, or a JWT's key id claim), ``"environment"``, ``"customer_id"``, or a
metadata name such as ``"customer"``. Every applicable rule
counts, and a request over any of its limits answers 429 ``rate_limited`` with
``Retry-After``. An identity that has no value for a rule's ``per`` (say, no ``customer``
metadata) is outside that rule: the rule does not apply, as a ``when`` that does not
match. Use a ``per = "key"`` rule as the catch-all if that matters.

``limit_from = "ATTR"`` (§15) reads the limit from the identity (say the customer's
metadata ``rate_limit = "1000/minute"``); ``limit`` is the default when the attribute is
absent or not a valid limit (a warning, once per bad value per process; never a 500).
Limit strings are the ``limits`` notation, parsed by ``limits``; the counting itself is
:mod:`envroute.counters`: one call per request for every matching limit, which on Redis is
one round trip (one Lua script) however many rules match.

Responses under a rule carry ``RateLimit-Limit``, ``RateLimit-Remaining`` and
``RateLimit-Reset`` (seconds until the window frees capacity) of the limit closest to
being exhausted.

Storage: ``memory://`` counts per process (so, under gunicorn, per worker);
``redis://…`` is one limit for every worker of every gateway sharing that Redis. The
storage is built lazily in each process, after gunicorn forks, never inherited. When the
storage cannot be reached, ``on_storage_error = "deny"`` (the default) answers 503
``store_unavailable`` and ``"allow"`` lets the request through without headers: choose
between an outage of Redis becoming an outage of the API, or going unlimited meanwhile.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote

from .accesslog import OutageLog
from .counters import Check, Counter, MemoryCounter, RedisCounter
from .errors import StoreUnavailable
from .identity import Identity
from .names import DRY_RUN_KEY
from .problems import Problem
from .routing import AttributeIndex, RequestMatcher, compile_request, matches
from .settings import RateLimitRule, RateLimitSettings
from .typing import HeaderList, WSGIEnvironment

logger = logging.getLogger("envroute")

NAMESPACE = "envroute"
#: A Redis that does not answer within this many seconds counts as unreachable, so a
#: stuck rate-limit store costs a request about a second, not a hung worker.
REDIS_TIMEOUT = 1.0
#: Distinct bad ``limit_from`` values warned about per process (then silently defaulted).
_WARN_AT_MOST = 256

#: One limit: (amount, window in seconds, as written).
Limit = tuple[int, int, str]


@functools.lru_cache(maxsize=1024)
def parse_limits(text: str) -> tuple[Limit, ...] | None:
    """``"100/second;5000/hour"`` -> limits; None when ``limits`` cannot read it."""
    from limits import parse_many  # an extra: imported only when rate limits are set

    try:
        items = parse_many(text)
    except ValueError:
        return None
    return tuple((item.amount, item.get_expiry(), str(item)) for item in items) or None


@dataclass(frozen=True, slots=True)
class _Rule:
    settings: RateLimitRule
    limits: tuple[Limit, ...]
    request: RequestMatcher | None

    def subject(self, identity: Identity) -> str | None:
        """The value this rule counts per, or None when the identity has none."""
        per = self.settings.per
        if per == "key":
            return identity.key_id or None
        value = identity.attribute(per)
        if value is None or value == "" or isinstance(value, bool):
            return None
        return value if isinstance(value, str) else str(value)


class RateLimitPolicy:
    """The ``[rate_limits]`` policy: hits every applicable limit, refuses over any."""

    def __init__(self, settings: RateLimitSettings, source: str = "<config>",
                 key_prefix: str = "LIMITS") -> None:
        self.settings = settings
        self.source = source
        self.key_prefix = key_prefix
        rules = []
        for rule in settings.rules:
            parsed = parse_limits(rule.limit)
            if parsed is None:  # the config validated it; only a hand-built Settings gets here
                raise ValueError(f"rate_limits.rules[{rule.index}].limit: {rule.limit!r}")
            rules.append(_Rule(rule, parsed, compile_request(rule.request)))
        self.rules = tuple(rules)
        self._index = AttributeIndex([rule.when for rule in settings.rules])
        self._counter: Counter | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        #: with "allow", an outage is logged once when it starts and ends, not per request
        self._outage = OutageLog("rate-limit storage", "allowing requests without rate "
                                 "limits until it answers", "allowed without rate limits")

    # -- storage, per process ---------------------------------------------------------

    def _build(self) -> Counter:
        if self.settings.storage.startswith("redis"):
            return RedisCounter(self.settings.storage, self.settings.strategy,
                                prefix=self.key_prefix, timeout=REDIS_TIMEOUT)
        return MemoryCounter(self.settings.strategy)

    def limiter(self) -> Counter:
        """This process's counter, built on first use (gunicorn forks after import)."""
        pid = os.getpid()
        if self._pid != pid or self._counter is None:
            with self._lock:
                if self._pid != pid or self._counter is None:
                    self._counter = self._build()
                    self._pid = pid
        return self._counter

    def close(self) -> None:
        """Drop this process's connections to the storage (tests, shutdown)."""
        counter, self._counter = self._counter, None
        if counter is not None and self._pid == os.getpid():
            counter.close()

    def reach(self) -> str | None:
        """For ``envroute check``: count once in a Redis storage exactly as a request does
        (the same client, timeouts and script) and say how long it took; None for
        ``memory://``, which has nothing to reach.

        The count is under a key of its own (``envroute/check``) that expires within two
        seconds, so no caller's limit is touched. It proves more than a ``PING``: the
        password, the script (``EVALSHA``, which some managed services refuse) and a
        writable primary (a replica or a full ``maxmemory`` refuses writes). Raises
        :class:`StoreUnavailable` with the cause (never the URL's password).
        """
        if not self.settings.storage.startswith("redis"):
            return None
        started = time.perf_counter()
        try:
            counter = self.limiter()
        except ValueError as exc:  # redis-py's own reading of the URL (a port not a number)
            raise StoreUnavailable(f"not a usable Redis URL: {exc}") from None
        counter.acquire([Check(f"{NAMESPACE}/check", 1_000_000, 1)], time.time(), False)
        elapsed = (time.perf_counter() - started) * 1000
        return f"reached, the rate-limit script ran in {elapsed:.0f} ms"

    # -- the request ------------------------------------------------------------------

    def _limits(self, rule: _Rule, identity: Identity) -> tuple[Limit, ...]:
        name = rule.settings.limit_from
        if not name:
            return rule.limits
        value = identity.attribute(name)
        if value is None or value == "":
            return rule.limits
        parsed = parse_limits(value) if isinstance(value, str) else None
        if parsed is None:
            text = str(value)[:64]
            if text not in self._warned and len(self._warned) < _WARN_AT_MOST:
                self._warned.add(text)
                logger.warning("rate_limits.rules[%d]: %s = %r is not a limit such as "
                               "'1000/minute'; using limit = %r", rule.settings.index, name,
                               text, rule.settings.limit)
            return rule.limits
        return parsed

    def applicable(self, identity: Identity, environ: WSGIEnvironment) -> list[Check]:
        """Every limit this request counts against, in rule order."""
        checks: list[Check] = []
        rules = self.rules
        for position in self._index.candidates(identity):
            rule = rules[position]
            if not matches(rule.settings.when, identity):
                continue
            if rule.request is not None and not rule.request(environ):
                continue
            subject = rule.subject(identity)
            if subject is None:
                continue
            base = (f"{NAMESPACE}/rule{rule.settings.index}/{rule.settings.per}/"
                    f"{quote(subject, safe='')}")
            for amount, window, _ in self._limits(rule, identity):
                checks.append(Check(f"{base}/{amount}/{window}", amount, window))
        return checks

    def check(self, identity: Identity, environ: WSGIEnvironment) -> HeaderList:
        checks = self.applicable(identity, environ)
        if not checks:
            return []
        now = time.time()
        try:
            outcome = self.limiter().acquire(checks, now, bool(environ.get(DRY_RUN_KEY)))
        except StoreUnavailable as exc:
            if self.settings.on_storage_error == "allow":
                self._outage.failed(str(exc).removeprefix("rate-limit storage unavailable: "))
                return []
            raise
        self._outage.admitted()
        if outcome.refused >= 0:
            check = checks[outcome.refused]
            reset = _seconds_until(outcome.stats[-1][1], now)
            headers = _headers(check.limit, 0, reset)
            headers.append(("Retry-After", str(max(reset, 1))))
            raise Problem("rate_limited",
                          f"over the limit of {check.limit} per {_window_text(check.window)}"
                          f"; retry in {max(reset, 1)}s", headers=headers)
        index = min(range(len(checks)), key=lambda i: outcome.stats[i])
        remaining, reset_at = outcome.stats[index]
        return _headers(checks[index].limit, max(remaining, 0),
                        _seconds_until(reset_at, now))


def _window_text(seconds: int) -> str:
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return name if count == 1 else f"{count} {name}s"
    return "second" if seconds == 1 else f"{seconds} seconds"


def _seconds_until(moment: float, now: float) -> int:
    return max(0, math.ceil(moment - now))


def _headers(limit: int, remaining: int, reset: int) -> HeaderList:
    return [("RateLimit-Limit", str(limit)), ("RateLimit-Remaining", str(remaining)),
            ("RateLimit-Reset", str(reset))]
