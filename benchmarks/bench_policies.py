"""What verification and rate limiting cost per request, as ratios against the bare app.

    .venv/bin/python benchmarks/bench_policies.py [--iterations 3000]

In-process WSGI calls timed with ``time.perf_counter``: the bare app; the gateway with a
SQLite and with a PostgreSQL store, on a cache hit (the usual case) and a miss (the first
request per key per ``cache_ttl``, or after an invalidation); and the extra cost of a
Redis rate limit. PostgreSQL and Redis are those of the test suite (127.0.0.1:5432 and
:6379, ``ENVROUTE_TEST_POSTGRES`` / ``ENVROUTE_TEST_REDIS``); a case whose service is
absent is reported as skipped.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envroute import EnvRouter, KeyManager

SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
POSTGRES = os.environ.get("ENVROUTE_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
REDIS = os.environ.get("ENVROUTE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def environ(key: str) -> dict[str, Any]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/v1/charges", "QUERY_STRING": "",
            "SERVER_NAME": "bench", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
            "HTTP_AUTHORIZATION": f"Bearer {key}"}


def per_request(wsgi: Callable[..., Iterable[bytes]], key: str, iterations: int,
                before: Callable[[], None] | None = None) -> float:
    """Median-of-batches seconds per request (``before`` runs untimed before each call)."""
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    samples = []
    batch = 50
    for _ in range(max(iterations // batch, 1)):
        elapsed = 0.0
        for _ in range(batch):
            if before is not None:
                before()
            env = environ(key)
            started = time.perf_counter()
            body = wsgi(env, start_response)
            b"".join(body)
            close = getattr(body, "close", None)
            if close is not None:
                close()
            elapsed += time.perf_counter() - started
        samples.append(elapsed / batch)
    if not all(s.startswith("200") for s in statuses):
        raise SystemExit(f"unexpected responses: {sorted(set(statuses))}")
    samples.sort()
    return samples[len(samples) // 2]


def gateway(store_url: str, **sections: Any) -> tuple[EnvRouter, str]:
    settings = {"secret": SECRET, "store": {"url": store_url},
                "auth": {"cache_ttl": "1h"}, **sections}
    router = EnvRouter(app, settings)
    issued = KeyManager(router.store, router.settings).create("sandbox")
    return router, issued.secret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    iterations = parser.parse_args().iterations
    results: list[tuple[str, float | None]] = []
    bare = per_request(app, "", iterations)
    results.append(("bare app", bare))

    with tempfile.TemporaryDirectory() as directory:
        stores = {"SQLite": f"sqlite:///{Path(directory) / 'bench.db'}"}
        schema = f"envroute_bench_{secrets.token_hex(4)}"
        stores["PostgreSQL"] = f"{POSTGRES}?schema={schema}" if reachable(5432) else ""
        try:
            for name, url in stores.items():
                if not url:
                    results += [(f"{name}, cache hit", None), (f"{name}, cache miss", None)]
                    continue
                router, key = gateway(url)
                verifier = router.authenticator.api_keys
                per_request(router, key, 200)  # warm up: connections, migrations
                results.append((f"{name}, cache hit", per_request(router, key, iterations)))
                results.append((f"{name}, cache miss", per_request(
                    router, key, iterations // 3, before=verifier.invalidate)))
                router.store.close()
            if reachable(6379):
                limited = {"rate_limits": {"storage": REDIS, "rules": [
                    {"limit": "1000000/hour", "per": "key"}]}}
                router, key = gateway(stores["SQLite"], **limited)
                per_request(router, key, 200)
                results.append(("SQLite hit + Redis rate limit",
                                per_request(router, key, iterations)))
                router.close()
                router.store.close()
            else:
                results.append(("SQLite hit + Redis rate limit", None))
        finally:
            if stores["PostgreSQL"]:
                import psycopg

                with psycopg.connect(POSTGRES, autocommit=True) as connection:
                    connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    print(f"{'case':34} {'µs/request':>11} {'x bare':>9}")
    for name, seconds in results:
        if seconds is None:
            print(f"{name:34} {'skipped':>11}")
            continue
        print(f"{name:34} {seconds * 1e6:11.1f} {seconds / bare:9.1f}")
    hit = dict(results).get("SQLite, cache hit")
    limited_cost = dict(results).get("SQLite hit + Redis rate limit")
    if hit and limited_cost:
        print(f"Redis rate limit adds {(limited_cost - hit) * 1e6:.1f} µs/request "
              f"({limited_cost / hit:.1f}x a cache hit)")


if __name__ == "__main__":
    main()
