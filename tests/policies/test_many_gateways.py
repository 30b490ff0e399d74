"""§11: two gunicorn gateways, two workers each, one PostgreSQL store and one Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from envroute import KeyManager
from envroute.config import load_file
from envroute.stores.postgres import PostgresStore
from tests.support.apps import SECRET
from tests.support.processes import free_port, gunicorn_command, running

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).parents[2]


def write_config(directory: Path, store_url: str, extra: str = "") -> Path:
    path = directory / "envroute.toml"
    path.write_text(f"""
secret = "{SECRET}"
[store]
url = "{store_url}"
[auth]
cache_ttl = "60s"   # only the push can make a revocation visible within a second
[backends.main]
app = "tests.policies.apps:pid_app"
{extra}
""")
    return path


@pytest.fixture
def gateways(tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[tuple[list[str], Path]]:
    rate_limits = f"""
[rate_limits]
storage = "{redis_url}"
[[rate_limits.rules]]
limit = "10/minute"
per = "customer"
"""
    path = write_config(tmp_path, pg_url, rate_limits)
    urls = []
    with ExitStack() as stack:
        for _ in range(2):
            port = free_port()
            stack.enter_context(running(gunicorn_command("envroute.wsgi:app", port, workers=2),
                                        port=port, env={"ENVROUTE_CONFIG": str(path)},
                                        cwd=ROOT))
            urls.append(f"http://127.0.0.1:{port}/v1/charges")
        yield urls, path


def fetch(url: str, key: str) -> requests.Response:
    return requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10)


@pytest.fixture
def keys(gateways: tuple[list[str], Path]) -> Iterator[KeyManager]:
    """Key lifecycle on the PostgreSQL store the gateways share, under their config."""
    settings = load_file(gateways[1])
    store = PostgresStore(settings.store_url)
    yield KeyManager(store, settings)
    store.close()


def test_revocation_reaches_every_worker_of_every_gateway_within_a_second(
    gateways: tuple[list[str], Path], keys: KeyManager
) -> None:
    urls, _ = gateways
    issued = keys.create("sandbox")
    for url in urls:  # every worker verifies (and caches) the key
        workers: set[str] = set()
        deadline = time.monotonic() + 20
        while len(workers) < 2:
            response = fetch(url, issued.secret)
            assert response.status_code == 200, response.text
            workers.add(response.text)
            assert time.monotonic() < deadline, "a worker never answered"

    keys.revoke(issued.record.id)
    deadline = time.monotonic() + 1.0
    while True:
        codes = {fetch(url, issued.secret).status_code for url in urls for _ in range(6)}
        if codes == {401}:
            break
        assert time.monotonic() < deadline, f"still accepted after 1 s: {codes}"
    for url in urls:
        for _ in range(10):
            response = fetch(url, issued.secret)
            assert response.status_code == 401
            assert response.json()["code"] == "revoked_key"


def test_a_redis_rate_limit_is_one_limit_for_every_gateway(
    gateways: tuple[list[str], Path], keys: KeyManager
) -> None:
    urls, _ = gateways
    customer = f"acme-{time.monotonic_ns()}"
    secrets = [keys.create("sandbox", metadata={"customer": customer}).secret
               for _ in range(2)]
    statuses = [fetch(urls[i % 2], secrets[i // 2 % 2]).status_code for i in range(30)]
    assert statuses.count(200) == 10
    assert set(statuses) == {200, 429}
