"""What routing and rate limits cost per request, as the number of routes and rules grows.

    .venv/bin/python benchmarks/bench_routing.py [--iterations 20000]

In-process calls timed with ``time.perf_counter`` (median of batches), side by side in one
run so the ratios hold on a busy machine:

- routing with 10, 1,000 and 5,000 per-customer equality routes (``when = {environment,
  customer_id}``) and a default, for the first customer, the last one and a caller that
  falls through to the default; beside it a linear scan (0.1's router) over the same
  routes. Goal (issue 14): 5,000 routes within 2x the cost of 10.
- rate limits with 1 and 3 matching rules (3 limits with two of them per key), memory and
  Redis (127.0.0.1:6379 or ``ENVROUTE_TEST_REDIS``); beside each, 0.1's way: the
  ``limits`` strategy's ``hit`` plus ``get_window_stats`` per limit (two Redis round trips
  each). A case whose service is absent is reported as skipped.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envroute.config import parse_settings
from envroute.identity import Identity
from envroute.ratelimit import RateLimitPolicy
from envroute.routing import Router, matches

SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
REDIS = os.environ.get("ENVROUTE_TEST_REDIS", "redis://127.0.0.1:6379/0")
ENVIRON = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v1/charges"}


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def per_call(call: Callable[[], Any], iterations: int, batch: int = 200) -> float:
    """Median-of-batches seconds per call."""
    samples = []
    for _ in range(max(iterations // batch, 3)):
        started = time.perf_counter()
        for _ in range(batch):
            call()
        samples.append((time.perf_counter() - started) / batch)
    return statistics.median(samples)


def routes(count: int) -> Router:
    config = {"secret": SECRET, "backends": {"shared": {"url": "http://127.0.0.1:9/"},
                                             "dedicated": {"url": "http://127.0.0.1:9/d"}},
              "routes": [*({"when": {"environment": "production", "customer_id": f"cus_{i}"},
                            "backend": "dedicated"} for i in range(count)),
                         {"when": {}, "backend": "shared"}]}
    return Router(parse_settings(config).routes)


def linear(router: Router, identity: Identity) -> Any:
    """0.1's router: every route's ``when`` in turn."""
    for route in router.routes:
        if matches(route.when, identity):
            return route
    return None


def bench_routing(iterations: int) -> list[tuple[str, float, float]]:
    rows = []
    for count in (10, 1000, 5000):
        router = routes(count)
        for label, customer in (("first", "cus_0"), ("last", f"cus_{count - 1}"),
                                ("default", "nobody")):
            who = Identity("key_1", "production", customer_id=customer)
            indexed = per_call(lambda r=router, w=who: r.route(w, ENVIRON), iterations)
            scan = per_call(lambda r=router, w=who: linear(r, w),
                            max(iterations // (count // 10 or 1), 600))
            rows.append((f"{count:>5} routes, {label} customer", indexed, scan))
    return rows


def rules(count: int) -> list[dict[str, Any]]:
    chosen = [{"limit": "1000000/hour;100000/minute"}, {"limit": "1000000/hour",
                                                        "per": "customer"}]
    return chosen[:1] if count == 1 else [*chosen, {"limit": "1000000/hour", "per": "tier"}]


def old_way(storage: str, count: int) -> Callable[[Identity], None]:
    """0.1: the ``limits`` strategy, ``hit`` then ``get_window_stats`` per limit."""
    from limits import parse_many
    from limits.storage import storage_from_string
    from limits.strategies import MovingWindowRateLimiter

    limiter = MovingWindowRateLimiter(storage_from_string(storage))
    parsed = [(rule.get("per", "key"), parse_many(rule["limit"])) for rule in rules(count)]

    def check(identity: Identity) -> None:
        for index, (per, items) in enumerate(parsed):
            subject = identity.key_id if per == "key" else str(identity.attribute(per))
            for item in items:
                limiter.hit(item, "old", str(index), subject)
                limiter.get_window_stats(item, "old", str(index), subject)
    return check


def bench_limits(iterations: int) -> list[tuple[str, float | None, float | None]]:
    rows: list[tuple[str, float | None, float | None]] = []
    who = Identity(f"key_{secrets.token_hex(4)}", "sandbox",
                   metadata={"customer": secrets.token_hex(4), "tier": secrets.token_hex(4)})
    for storage, name in (("memory://", "memory"), (REDIS, "Redis")):
        for count in (1, 3):
            if storage.startswith("redis") and not reachable(6379):
                rows.append((f"{name}, {count} rule(s)", None, None))
                continue
            settings = parse_settings({"secret": SECRET, "rate_limits": {
                "storage": storage, "rules": rules(count)}})
            assert settings.rate_limits is not None
            policy = RateLimitPolicy(settings.rate_limits,
                                     key_prefix=f"BENCH{secrets.token_hex(3)}")
            policy.check(who, ENVIRON)
            turns = iterations if name == "memory" else iterations // 10
            new = per_call(lambda p=policy: p.check(who, ENVIRON), turns, batch=50)
            old = old_way(storage, count)
            old(who)
            before = per_call(lambda o=old: o(who), turns, batch=50)
            policy.close()
            rows.append((f"{name}, {count} rule(s)", new, before))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20000)
    iterations = parser.parse_args().iterations
    print(f"machine: {os.cpu_count()} cores (shared), Python {sys.version.split()[0]}")
    print(f"\n{'routing':38} {'µs indexed':>11} {'µs linear':>11}")
    routing = bench_routing(iterations)
    for label, indexed, scan in routing:
        print(f"{label:38} {indexed * 1e6:11.2f} {scan * 1e6:11.2f}")
    worst = {count: max(r[1] for r in routing if r[0].strip().startswith(str(count)))
             for count in (10, 5000)}
    print(f"5,000 routes cost {worst[5000] / worst[10]:.2f}x 10 routes (worst case each)")
    print(f"\n{'rate limits, moving window':38} {'µs now':>11} {'µs 0.1 way':>11}")
    for label, new, before in bench_limits(iterations):
        if new is None or before is None:
            print(f"{label:38} {'skipped':>11}")
            continue
        print(f"{label:38} {new * 1e6:11.1f} {before * 1e6:11.1f}")


if __name__ == "__main__":
    main()
