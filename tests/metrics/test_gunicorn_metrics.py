"""One scrape covers every gunicorn worker: real workers, a real upstream, a real scrape."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.apps import SECRET
from tests.support.processes import BIN, free_port, gunicorn_command, running

from .support import Samples, parse, value

pytestmark = pytest.mark.slow

TOKEN = "scrape-token-0123456789"
WORKERS = 3
CONFIG = f"""
secret = "{SECRET}"
[metrics]
path = "/metrics"
token = "{TOKEN}"
[store]
url = "sqlite:///keys.db"
[auth]
cache_ttl = "60s"
[backends.sandbox]
app = "envroute.demo_apps:sandbox_app"
[backends.production]
url = "http://127.0.0.1:UPSTREAM_PORT"
[rate_limits]
[[rate_limits.rules]]
limit = "1000/minute"
when = {{environment = "sandbox"}}
[[rate_limits.rules]]
limit = "1/minute"
when = {{tier = "free"}}
[[routes]]
when = {{environment = "sandbox"}}
backend = "sandbox"
[[routes]]
when = {{environment = "production"}}
backend = "production"
"""


def envroute(cwd: Path, *args: str) -> str:
    return subprocess.run([str(BIN / "envroute"), *args], cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def upstream() -> Iterator[int]:
    port = free_port()
    with running(gunicorn_command("envroute.demo_apps:production_app", port, workers=1),
                 port=port):
        yield port


@pytest.fixture
def project(tmp_path: Path, upstream: int) -> Path:
    (tmp_path / "envroute.toml").write_text(CONFIG.replace("UPSTREAM_PORT", str(upstream)))
    (tmp_path / "tmp").mkdir()
    return tmp_path


class Gateway:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def get(self, key: str | None = None, path: str = "/v1/charges") -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.get(self.url + path, headers=headers, timeout=10)

    def scrape(self, token: str = TOKEN) -> Samples:
        response = self.get(token, "/metrics")
        assert response.status_code == 200, response.text
        return parse(response.text)

    def converged(self, expected: Callable[[Samples], bool]) -> Samples:
        """Scrape until every worker has flushed (about a second), then ten scrapes agree."""
        deadline = time.monotonic() + 20
        while not expected(samples := self.scrape()):
            assert time.monotonic() < deadline, samples
            time.sleep(0.1)
        for _ in range(10):  # whichever worker answers, it answers for all of them
            assert counts(self.scrape()) == counts(samples)
        return samples


def counts(samples: Samples) -> Samples:
    """All but the ``_sum`` samples: floats summed over the files may differ in the last bit."""
    return {key: count for key, count in samples.items() if not key[0].endswith("_sum")}


def outcome(response: requests.Response) -> str:
    return "ok" if response.status_code < 400 else str(response.json()["code"])


@pytest.mark.parametrize("preload", [pytest.param(False, id="workers-load-the-app"),
                                     pytest.param(True, id="preload")])
def test_one_scrape_covers_every_worker(project: Path, preload: bool) -> None:
    def create(*args: str) -> str:
        return str(json.loads(envroute(project, "keys", "create", *args, "--json"))["key"])

    keys = {("sandbox", "sandbox"): create("-e", "sandbox"),
            ("production", "production"): create("-e", "production"),
            ("sandbox", "free"): create("-e", "sandbox", "--meta", "tier=free"),
            ("-", "none"): "", ("-", "bogus"): "sk_test_NotARealKey0000000000"}
    port = free_port()
    command = gunicorn_command("envroute.wsgi:app", port, workers=WORKERS, threads=4,
                               worker_class="gthread") + (["--preload"] if preload else [])
    env = {"ENVROUTE_CONFIG": "envroute.toml", "TMPDIR": str(project / "tmp")}
    gateway = Gateway(port)
    expected: Counter[tuple[str, str, str]] = Counter()

    def send(rounds: int) -> None:
        with ThreadPoolExecutor(8) as pool:
            plan = list(keys.items()) * rounds
            answers = pool.map(lambda item: gateway.get(item[1] or None), plan)
            for ((environment, kind), _), response in zip(plan, answers, strict=True):
                code = outcome(response)
                backend = kind if kind in ("sandbox", "production") else "-"
                if kind == "free":
                    backend = "sandbox" if code == "ok" else "-"
                expected[(environment, backend, code)] += 1

    def matches(samples: Samples) -> bool:
        counted = {(dict(labels)["environment"], dict(labels)["backend"],
                    dict(labels)["code"]): count
                   for (name, labels), count in samples.items()
                   if name == "envroute_requests_total"}
        return counted == expected

    with running(command, port=port, env=env, cwd=project) as server:
        send(rounds=30)
        assert expected[("sandbox", "-", "rate_limited")] >= 30 - WORKERS
        assert set(expected) == {("sandbox", "sandbox", "ok"), ("production", "production", "ok"),
                                 ("sandbox", "-", "rate_limited"),
                                 ("-", "-", "missing_credentials"), ("-", "-", "invalid_key")}
        samples = gateway.converged(matches)
        for environment, backend in {(e, b) for e, b, _ in expected}:
            assert value(samples, "envroute_request_duration_seconds_count",
                         environment=environment, backend=backend) == sum(
                count for (e, b, _), count in expected.items() if (e, b) == (environment, backend))
        assert value(samples, "envroute_upstream_duration_seconds_count",
                     backend="production") == 30
        assert value(samples, "envroute_upstream_duration_seconds_count", backend="sandbox") == 0
        hits, misses = (value(samples, "envroute_auth_cache_total", result=result)
                        for result in ("hit", "miss"))
        assert hits + misses == 3 * 30  # every request with a well-formed key
        # a real key misses once per worker and thread that verify it at the same moment
        # (cache_ttl is 60 s); a malformed one never reaches the cache nor the store
        assert 3 <= misses <= 3 * WORKERS * 4
        assert value(samples, "envroute_store_errors_total") == 0
        labels = {label for (_, names) in samples for label, _ in names}
        assert labels <= {"environment", "backend", "code", "status", "result", "le"}
        assert sum(count for (name, _), count in samples.items()
                   if name == "envroute_responses_total") == sum(expected.values())

        # the metrics path: only with the token, never counted, never a backend
        for headers in ({}, {"Authorization": f"Bearer {keys[('sandbox', 'sandbox')]}"},
                        {"Authorization": "Bearer another-token"}):
            refused = requests.get(gateway.url + "/metrics", headers=headers, timeout=10)
            assert refused.status_code == 401
            assert refused.json()["code"] in ("missing_credentials", "invalid_token")
            assert "envroute_" not in refused.text
        assert counts(gateway.scrape()) == counts(samples)

        directories = list((project / "tmp").glob("envroute-metrics-*/*"))
        assert [d.name.split("-")[0] for d in directories] == [str(server.pid)]

        # gunicorn replaces every worker on HUP: the old ones' counts stay in the totals,
        # including what they had not flushed yet (written at exit)
        send(rounds=5)
        os.kill(server.pid, signal.SIGHUP)
        send(rounds=5)
        gateway.converged(matches)
    if preload:  # the master built the gateway: it removes its directory at exit
        assert list((project / "tmp").glob("envroute-metrics-*/*")) == []
