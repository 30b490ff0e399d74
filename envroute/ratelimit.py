"""Rate limits over the ``limits`` library: per key, per environment, per metadata value.

Each ``[[rate_limits.rules]]`` entry applies to the identities its ``when`` matches (the
routes' matcher) and counts per ``per``: ``"key"`` (the key id, or a JWT's key id claim),
``"environment"``, or a metadata name such as ``"customer"``. Every applicable rule
counts, and a request over any of its limits answers 429 ``rate_limited`` with
``Retry-After``. An identity that has no value for a rule's ``per`` (say, no ``customer``
metadata) is outside that rule: the rule does not apply, as a ``when`` that does not
match. Use a ``per = "key"`` rule as the catch-all if that matters.

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

import importlib.util
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .errors import ConfigError, StoreUnavailable
from .identity import Identity
from .policies import DRY_RUN_KEY
from .problems import Problem
from .routing import matches
from .settings import RateLimitRule, RateLimitSettings
from .typing import HeaderList, WSGIEnvironment

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.strategies import RateLimiter

logger = logging.getLogger("envroute")

NAMESPACE = "envroute"
#: A Redis that does not answer within this many seconds counts as unreachable, so a
#: stuck rate-limit store costs a request about a second, not a hung worker.
REDIS_TIMEOUT = 1.0
REDIS_OPTIONS: dict[str, float | str | bool] = {
    "socket_connect_timeout": REDIS_TIMEOUT,
    "socket_timeout": REDIS_TIMEOUT,
}


@dataclass(frozen=True, slots=True)
class _Rule:
    settings: RateLimitRule
    items: tuple[RateLimitItem, ...]

    def subject(self, identity: Identity) -> str | None:
        """The value this rule counts per, or None when the identity has none."""
        per = self.settings.per
        if per == "key":
            return identity.key_id or None
        value = identity.attribute(per)
        if value is None or value == "":
            return None
        return value if isinstance(value, str) else str(value)


class RateLimitPolicy:
    """The ``[rate_limits]`` policy: hits every applicable limit, refuses over any."""

    def __init__(self, settings: RateLimitSettings, source: str = "<config>",
                 key_prefix: str = "LIMITS") -> None:
        from limits import parse_many  # an extra: imported only when rate limits are set

        self.settings = settings
        self.key_prefix = key_prefix
        scheme = settings.storage.partition("://")[0]  # config allows memory and redis only
        if scheme.startswith("redis") and importlib.util.find_spec("redis") is None:
            raise ConfigError("redis:// rate limits need the redis package: "
                              "pip install 'envroute[redis]'", key="rate_limits.storage",
                              source=source)
        self.rules = tuple(_Rule(rule, tuple(parse_many(rule.limit)))
                           for rule in settings.rules)
        self._limiter: RateLimiter | None = None
        self._pid = 0
        self._lock = threading.Lock()

    # -- storage, per process ---------------------------------------------------------

    def _build(self) -> RateLimiter:
        from limits.storage import storage_from_string
        from limits.strategies import STRATEGIES

        options: dict[str, Any] = {"wrap_exceptions": True}
        if self.settings.storage.startswith("redis"):
            options.update(REDIS_OPTIONS, key_prefix=self.key_prefix)
        storage = storage_from_string(self.settings.storage, **options)
        return STRATEGIES[self.settings.strategy](storage)

    def limiter(self) -> RateLimiter:
        """This process's limiter, built on first use (gunicorn forks after import)."""
        pid = os.getpid()
        if self._pid != pid or self._limiter is None:
            with self._lock:
                if self._pid != pid or self._limiter is None:
                    self._limiter = self._build()
                    self._pid = pid
        return self._limiter

    def close(self) -> None:
        """Drop this process's connections to the storage (tests, shutdown)."""
        limiter, self._limiter = self._limiter, None
        if limiter is None or self._pid != os.getpid():
            return
        client = getattr(limiter.storage, "storage", None)
        close = getattr(client, "close", None)
        if callable(close) and not isinstance(client, dict):
            close()

    # -- the request ------------------------------------------------------------------

    def check(self, identity: Identity, environ: WSGIEnvironment) -> HeaderList:
        applicable = [(rule, subject) for rule in self.rules
                      if (subject := rule.subject(identity)) is not None
                      and matches(rule.settings.when, identity)]
        if not applicable:
            return []
        from limits.errors import StorageError

        try:
            return self._hit(applicable, dry_run=bool(environ.get(DRY_RUN_KEY)))
        except StorageError as exc:
            if self.settings.on_storage_error == "allow":
                logger.warning("rate-limit storage unavailable, allowing the request: %s",
                               exc.storage_error)
                return []
            raise StoreUnavailable(
                f"rate-limit storage unavailable: {exc.storage_error}") from exc

    def _hit(self, applicable: list[tuple[_Rule, str]], *, dry_run: bool = False) -> HeaderList:
        """Count the request against every applicable limit (only test them on a dry run)."""
        limiter = self.limiter()
        closest: tuple[int, float, int] | None = None  # remaining, reset, limit
        for rule, subject in applicable:
            identifiers = (NAMESPACE, f"rule{rule.settings.index}", rule.settings.per,
                           quote(subject, safe=""))
            for item in rule.items:
                allowed = (limiter.test if dry_run else limiter.hit)(item, *identifiers)
                if not allowed:
                    stats = limiter.get_window_stats(item, *identifiers)
                    reset = _seconds_until(stats.reset_time)
                    headers = _headers(item.amount, 0, reset)
                    headers.append(("Retry-After", str(max(reset, 1))))
                    raise Problem("rate_limited",
                                  f"over the limit of {item} "
                                  f"(per {rule.settings.per}); retry in {max(reset, 1)}s",
                                  headers=headers)
                stats = limiter.get_window_stats(item, *identifiers)
                candidate = (stats.remaining, stats.reset_time, item.amount)
                if closest is None or candidate[:2] < closest[:2]:
                    closest = candidate
        assert closest is not None
        remaining, reset_time, amount = closest
        return _headers(amount, max(remaining, 0), _seconds_until(reset_time))


def _seconds_until(moment: float) -> int:
    return max(0, math.ceil(moment - time.time()))


def _headers(limit: int, remaining: int, reset: int) -> HeaderList:
    return [("RateLimit-Limit", str(limit)), ("RateLimit-Remaining", str(remaining)),
            ("RateLimit-Reset", str(reset))]
