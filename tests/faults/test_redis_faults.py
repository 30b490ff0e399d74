"""Redis (the rate-limit store) failing under load, through gunicorn (issue 16; CONTRACT §8).

``on_storage_error = "deny"``: while Redis is refused or black-holed every request under a
rule is ``503 store_unavailable`` (within Redis's 1 s timeout, never a hang); ``"allow"``:
every one is served, without rate-limit headers. Either way the limit is back, headers and
all, once Redis answers again, with no restart, and the log has the outage once per worker
when it starts and once when it ends, never a line per request.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from envroute import KeyManager
from envroute.config import load_file
from envroute.stores.sqlite import SQLiteStore
from tests.faults.conftest import WORKERS, bearer, gateway, label
from tests.support.faults import Load, forwarding, wait_until

pytestmark = pytest.mark.slow

REDIS_BOUND = 1.0  # the documented Redis timeout
SLACK = 8.0


def config(tmp_path: Path, redis_port: int, on_error: str) -> str:
    return f"""
[store]
url = "sqlite:///{tmp_path / 'keys.db'}"
[backends.main]
app = "tests.policies.apps:pid_app"
[rate_limits]
storage = "redis://127.0.0.1:{redis_port}/0"
on_storage_error = "{on_error}"
[[rate_limits.rules]]
limit = "1000000/minute"
per = "key"
"""


def answer(response: requests.Response) -> str:
    """The label, and for a 200 whether the limit was counted (its headers)."""
    counted = "RateLimit-Limit" in response.headers
    return label(response) + (" limited" if counted else " unlimited") * (
        response.status_code == 200)


@pytest.mark.parametrize(("on_error", "during", "start", "end"), [
    pytest.param("deny", "503 store_unavailable", r"^store unavailable: rate-limit",
                 r"^store available again after .* were refused with 503", id="deny"),
    pytest.param("allow", "200 unlimited", r"^rate-limit storage unavailable: ",
                 r"^rate-limit storage available again after .* were allowed without",
                 id="allow"),
])
def test_redis_down_or_blackholed_is_denied_or_allowed_and_recovers(
        tmp_path: Path, redis_url: str, on_error: str, during: str, start: str,
        end: str) -> None:
    with forwarding(6379) as forwarder, \
            gateway(tmp_path, config(tmp_path, forwarder.port, on_error)) as gw:
        store = SQLiteStore(f"sqlite:///{tmp_path / 'keys.db'}")
        secret = KeyManager(store, load_file(tmp_path / "envroute.toml")).create(
            "sandbox").secret
        url = f"{gw.url}/v1/charges"
        with Load(lambda: answer(requests.get(url, headers=bearer(secret), timeout=60)),
                  threads=WORKERS) as load:
            for fault in (forwarder.refuse, forwarder.blackhole):
                load.wait_for("200 limited", 10, "Redis counts")
                fault()
                load.wait_for(during, 3 * WORKERS, f"{fault.__name__}: requests {during}")
                forwarder.restore()
                load.wait_for("200 limited", 10, f"after {fault.__name__}: Redis counts again")
            wait_until(lambda: len(gw.lines(end)) >= len(gw.lines(start)),
                       "every worker that reported the outage reported its end")
        store.close()

    print(f"\nRedis {on_error}: {dict(load.counts)}, slowest {load.slowest:.1f} s")
    assert set(load.counts) <= {"200 limited", during}, load.counts
    assert load.slowest < REDIS_BOUND * 2 + SLACK, f"a request hung {load.slowest:.1f} s"
    starts, ends = gw.lines(start), gw.lines(end)
    assert 1 <= len(starts) <= 2 * gw.workers, starts  # two outages
    assert len(ends) == len(starts), ends
    outcomes = {"deny": "503 store_unavailable", "allow": "200 unlimited"}
    assert sum(int(line.split("; ")[1].split()[0]) for line in ends) == load.counts[
        outcomes[on_error]], ends  # the end lines count every request the outage touched
    assert not gw.lines(r"Traceback|Internal Server Error"), gw.read_log()[-3000:]
