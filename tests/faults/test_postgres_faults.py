"""PostgreSQL failing under load, through gunicorn (issue 16; CONTRACT §8, §11).

The gateway reaches PostgreSQL through a :class:`~tests.support.faults.Forwarder`; the test
makes keys and changes them on a direct connection, so it can change the store while the
gateways are cut off from it (their NOTIFY is lost: the case a reconnect must repair).

Made-up keys (right format and checksum, in no store) are the cache-missing requests: each
one needs a store query, answered ``401 invalid_key`` when the store answers and ``503
store_unavailable`` when it does not. A verified key is served from the cache meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from envroute import KeyManager, keys
from envroute.config import load_file
from envroute.stores.postgres import GRACE, POOL_TIMEOUT, QUERY_TIMEOUT, PostgresStore
from tests.faults.conftest import WORKERS, Gateway, bearer, gateway, label
from tests.support.faults import Forwarder, Load, forwarding, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

#: The documented bound of one request that needs the store: a wait for a connection
#: (pool_timeout), then the query, cut off at query_timeout + grace.
STORE_BOUND = QUERY_TIMEOUT + GRACE + POOL_TIMEOUT
SLACK = 8.0  # a loaded 2-core machine: generous, and still far below "hangs"
OUTAGE_START = r"store unavailable: "
OUTAGE_END = r"store available again after .* requests were refused"


def through(url: str, forwarder: Forwarder) -> str:
    return url.replace("127.0.0.1:5432", f"127.0.0.1:{forwarder.port}", 1)


@pytest.fixture
def pg(pg_url: str) -> Iterator[tuple[str, Forwarder]]:
    with forwarding(5432) as forwarder:
        yield pg_url, forwarder


def config(store_url: str) -> str:
    return f"""
[store]
url = "{store_url}"
[auth]
cache_ttl = "1h"    # only a change (or a reconnect's Change("all")) may end a verdict: a
                    # 60 s TTL could run out during a slow run under load (a flaky 503)
[backends.main]
app = "tests.policies.apps:pid_app"
"""


def manager(gw: Gateway, direct_url: str) -> tuple[KeyManager, PostgresStore]:
    settings = load_file(gw.log.with_name("envroute.toml"))
    store = PostgresStore(direct_url)
    return KeyManager(store, settings), store


def get(gw: Gateway, secret: str) -> requests.Response:
    return requests.get(f"{gw.url}/v1/charges", headers=bearer(secret), timeout=120)


def every_worker(gw: Gateway, secret: str, expected: str, timeout: float) -> set[str]:
    """Ask until ``WORKERS`` distinct workers answered; every answer must be ``expected``."""
    pids: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(pids) < gw.workers:
        response = get(gw, secret)
        assert label(response) == expected, (label(response), response.text)
        pids.add(response.text)
        assert time.monotonic() < deadline, f"only workers {pids} answered"
    return pids


def made_up(prefix: str) -> str:
    return keys.generate_secret(prefix)


def test_a_blackholed_postgres_is_503_within_the_bound_logged_once_and_recovers(
        tmp_path: Path, pg: tuple[str, Forwarder]) -> None:
    direct, forwarder = pg
    with gateway(tmp_path, config(through(direct, forwarder))) as gw:
        manage, store = manager(gw, direct)
        known = manage.create("sandbox").secret
        prefix = keys.split_prefix(known) or ""
        every_worker(gw, known, "200", timeout=30)  # every worker has the key cached

        # as many callers as workers: no request waits in gunicorn's queue behind another
        missing = Load(lambda: label(get(gw, made_up(prefix))), threads=WORKERS - 1)
        cached = Load(lambda: label(get(gw, known)), threads=1)
        with missing, cached:
            wait_until(lambda: missing.count("401 invalid_key") >= 10, "store answers")
            forwarder.blackhole()
            wait_until(lambda: missing.count("503 store_unavailable") >= 2 * (WORKERS - 1),
                       "cache-missing requests refused with 503", timeout=60)
            forwarder.restore()
            answered = missing.count("401 invalid_key")
            wait_until(lambda: missing.count("401 invalid_key") >= answered + 10,
                       "the store answers again, without a restart", timeout=60)
            wait_until(lambda: len(gw.lines(OUTAGE_END)) >= len(gw.lines(OUTAGE_START)),
                       "every worker that reported the outage reported its end",
                       timeout=60)
        store.close()

    starts, ends = gw.lines(OUTAGE_START), gw.lines(OUTAGE_END)
    refused = missing.counts["503 store_unavailable"]
    print(f"\nPostgreSQL black-holed: cache-missing {dict(missing.counts)}, slowest "
          f"{missing.slowest:.1f} s; cached key {dict(cached.counts)}; log {len(starts)} "
          f"start and {len(ends)} end lines")
    assert set(missing.counts) <= {"401 invalid_key", "503 store_unavailable"}, missing.counts
    assert set(cached.counts) == {"200"}, cached.counts  # the cache serves through it
    assert missing.slowest < STORE_BOUND + SLACK, f"a request hung {missing.slowest:.1f} s"
    # the log stays readable: the outage once per worker when it starts and when it ends
    assert 1 <= len(starts) <= gw.workers, starts
    assert len(ends) == len(starts), ends
    assert sum(int(line.split("; ")[1].split()[0]) for line in ends) == refused, ends
    assert not gw.lines(r"Traceback|Internal Server Error"), gw.read_log()[-3000:]


def test_a_change_made_while_postgres_restarts_twice_is_honoured_after_recovery(
        tmp_path: Path, pg: tuple[str, Forwarder]) -> None:
    direct, forwarder = pg
    with gateway(tmp_path, config(through(direct, forwarder))) as gw:
        manage, store = manager(gw, direct)
        issued = [manage.create("sandbox") for _ in range(3)]
        prefix = keys.split_prefix(issued[0].secret) or ""
        for key in issued:
            every_worker(gw, key.secret, "200", timeout=30)
        def cached() -> str:
            return label(get(gw, issued[0].secret))

        with Load(cached, threads=WORKERS) as load:
            for restart in range(2):  # reset every connection; refused until it is back
                forwarder.refuse()
                wait_until(lambda: get(gw, made_up(prefix)).status_code == 503,
                           f"restart {restart + 1}: the store is down")
                if restart == 1:  # the gateways are deaf: this NOTIFY is lost to them
                    manage.revoke(issued[1].record.id)
                forwarder.restore()
                wait_until(lambda: get(gw, made_up(prefix)).status_code == 401,
                           f"restart {restart + 1}: the store answers again", timeout=60)
            # lost while deaf: the reconnect drops what every worker cached meanwhile
            wait_until(lambda: all(label(get(gw, issued[1].secret)) == "401 revoked_key"
                                   for _ in range(10 * gw.workers)),
                       "a revocation made during the outage honoured by every worker",
                       timeout=15)
            # made after recovery: honoured by every worker within §11's second (+ slack)
            manage.revoke(issued[2].record.id)
            revoked = time.monotonic()
            wait_until(lambda: all(label(get(gw, issued[2].secret)) == "401 revoked_key"
                                   for _ in range(10 * gw.workers)),
                       "a revocation after recovery honoured by every worker", timeout=15)
            honoured = time.monotonic() - revoked
        store.close()

    print(f"\nPostgreSQL restarted twice: {dict(load.counts)}; honoured in {honoured:.2f} s")
    # served from the cache, or (once a reconnect dropped it, during the next outage) 503
    assert set(load.counts) <= {"200", "503 store_unavailable"}, load.counts
    assert honoured < 1.0 + 4.0, f"honoured only after {honoured:.1f} s"  # §11 + slack


def test_a_read_after_every_pooled_connection_died_is_answered(
        pg: tuple[str, Forwarder]) -> None:
    """A server restarted, or a partition healed with every connection reset: the pool
    still holds the dead connections. The next read is answered, however many there are
    (it was retried once: with two dead connections pooled, a cached key re-verified after
    the listener's reconnect was a 503)."""
    direct, forwarder = pg
    store = PostgresStore(through(direct, forwarder))
    try:
        assert store.lookup(b"\0" * 32) is None  # the pool is open and answers
        pool = store._pool_for_process()
        held = [pool.getconn(timeout=10) for _ in range(3)]  # three idle connections
        for connection in held:
            pool.putconn(connection)
        forwarder.reset()
        assert store.lookup(b"\0" * 32) is None
    finally:
        store.close()
