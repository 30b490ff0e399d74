"""The gateway under gunicorn's gevent worker (extra ``gevent``): several workers, real
sockets, every part that blocks or runs in the background.

One table of cases, one per store: SQLite with memory rate limits, PostgreSQL with Redis
rate limits. Each case runs ``gunicorn -k gevent`` with two workers in front of an
upstream that answers only once ``GATHERED`` requests wait on it at the same time, so the
proxy's answers prove that each worker held many requests at once (a worker that blocked
its hub on a socket, the store or the pool would hold one, and the upstream would answer
"alone"). Then: rate limits count, the usage timer (a greenlet under monkey-patching)
flushes while the workers run, a revocation from the CLI reaches every worker through
the store's push channel (``LISTEN/NOTIFY``, or SQLite's change marker), not through
``cache_ttl`` (an hour here), and what was counted last is written when gunicorn stops
the workers. Every wait is for a condition, with a generous deadline.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.support.apps import SECRET
from tests.support.processes import BIN, free_port, gunicorn_command, running
from tests.support.services import require_postgres, require_redis

if not os.environ.get("CI"):  # CI installs .[all,test], which holds the gevent extra
    pytest.importorskip("gevent")
pytestmark = pytest.mark.slow

GATHERED = 24
LIMIT = 5
CONFIG = """
secret = "{secret}"
[store]
url = "{store}"
[auth]
cache_ttl = "1h"
[backends.upstream]
url = "http://127.0.0.1:{upstream}"
[[routes]]
when = {{environment = "sandbox"}}
backend = "upstream"
[rate_limits]
storage = "{limits}"
[[rate_limits.rules]]
limit = "{limit}/hour"
per = "key"
when = {{tier = "limited"}}
"""


class Gate:
    """Holds each request until ``size`` wait together (or ``timeout`` passes)."""

    def __init__(self, size: int, timeout: float = 30.0) -> None:
        self.size, self.timeout = size, timeout
        self.waiting = 0
        self.condition = threading.Condition()

    def wait(self) -> bool:
        with self.condition:
            self.waiting += 1
            self.condition.notify_all()
            return self.condition.wait_for(lambda: self.waiting >= self.size, self.timeout)


@contextmanager
def upstream(gate: Gate) -> Iterator[int]:
    """``/gather`` answers ``gathered`` once the gate opens; anything else ``hello``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = b"hello"
            if self.path == "/gather":
                body = b"gathered" if gate.wait() else b"alone"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def envroute(cwd: Path, *args: str) -> str:
    return subprocess.run([str(BIN / "envroute"), *args], cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=120).stdout


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}"
        time.sleep(0.2)


@pytest.fixture
def sqlite_setup(tmp_path: Path) -> tuple[str, str]:
    return f"sqlite:///{tmp_path / 'keys.db'}", "memory://"


@pytest.fixture
def postgres_setup() -> Iterator[tuple[str, str]]:
    import psycopg

    base, redis = require_postgres(), require_redis()
    schema = f"envroute_test_{secrets.token_hex(6)}"
    yield f"{base}{'&' if '?' in base else '?'}schema={schema}", redis
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.parametrize("setup", [
    pytest.param("sqlite_setup", id="sqlite-memory-limits"),
    pytest.param("postgres_setup", id="postgres-redis-limits",
                 marks=[pytest.mark.postgres, pytest.mark.redis]),
])
def test_gevent_workers(setup: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store, limits = request.getfixturevalue(setup)
    gate = Gate(GATHERED)
    with upstream(gate) as upstream_port:
        (tmp_path / "envroute.toml").write_text(CONFIG.format(
            secret=SECRET, store=store, upstream=upstream_port, limits=limits, limit=LIMIT))
        gathering = json.loads(envroute(tmp_path, "keys", "create", "-e", "sandbox", "--json"))
        limited = json.loads(envroute(tmp_path, "keys", "create", "-e", "sandbox",
                                      "--meta", "tier=limited", "--json"))
        port = free_port()
        command = ["sh", "-c", 'exec "$@" >>"$0" 2>&1', str(tmp_path / "gunicorn.log"),
                   *gunicorn_command("envroute.wsgi:app", port, workers=2,
                                     worker_class="gevent"),
                   "--worker-connections", "200"]
        url = f"http://127.0.0.1:{port}"
        with running(command, port=port, cwd=tmp_path,
                     env={"ENVROUTE_CONFIG": "envroute.toml"}):
            def fetch(key: str, path: str = "/hello") -> requests.Response:
                return requests.get(url + path, headers={"X-API-Key": key}, timeout=60)

            # many requests in flight in two workers at once, each a store miss at first
            with ThreadPoolExecutor(GATHERED) as pool:
                answers = list(pool.map(lambda _: fetch(gathering["key"], "/gather"),
                                        range(GATHERED)))
            assert [(a.status_code, a.text) for a in answers] == [(200, "gathered")] * GATHERED

            # rate limits: Redis is one limit for both workers; memory one per worker
            codes = [fetch(limited["key"]).status_code for _ in range(3 * LIMIT)]
            assert set(codes) == {200, 429}, codes
            passed = codes.count(200)
            assert passed == LIMIT if limits.startswith("redis") else LIMIT <= passed <= 2 * LIMIT

            # the usage timer flushes while the workers run
            def flushed() -> bool:
                days = json.loads(envroute(tmp_path, "keys", "usage", gathering["id"], "--json"))
                return sum(day["requests"] for day in days) == GATHERED

            wait_for(flushed, f"usage of {GATHERED} requests flushed")

            # a revocation reaches every worker through the push channel, not cache_ttl
            envroute(tmp_path, "keys", "revoke", gathering["id"])
            wait_for(lambda: {fetch(gathering["key"]).status_code for _ in range(12)} == {401},
                     "every worker refuses the revoked key")
            assert fetch(gathering["key"]).json()["code"] == "revoked_key"
            codes.append(fetch(limited["key"]).status_code)  # memory: either worker's count
            if limits.startswith("redis"):
                assert codes[-1] == 429
        # stopped (SIGTERM): what the workers counted since their last tick is written at exit
        days = json.loads(envroute(tmp_path, "keys", "usage", limited["id"], "--json"))
        assert sum(day["requests"] for day in days) == len(codes)
        assert sum(day["errors"] for day in days) == codes.count(429)
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in log, log
