"""§11: every change reaches every worker within 1 s, on every store, through gunicorn.

For each change a key, a customer or a stored backend can undergo, the gateways' workers
first answer (and cache) the old state; then the console script makes the change, and
within the propagation second (plus slack for a shared machine) a long run of requests,
spread over every worker of every gateway, all see the new state. SQLite: one gateway of
three workers (the change marker); PostgreSQL: two gateways of two workers (NOTIFY).
``cache_ttl`` is a minute, so only the push can make the change visible in time.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.services import require_postgres

from .conftest import drop_schema, with_schema
from .placement import (
    PROPAGATION,
    SLACK,
    Upstream,
    envroute,
    envroute_json,
    gateways,
    observe,
    upstream,
    write_config,
)

pytestmark = pytest.mark.slow


@dataclass
class Site:
    config: Path
    urls: list[str]
    upstreams: dict[str, Upstream]
    workers: int


@pytest.fixture(scope="module", params=[
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
])
def site(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp(f"propagation-{request.param}")
    with ExitStack() as stack:
        if request.param == "sqlite":
            store_url, count, workers = f"sqlite:///{directory / 'keys.db'}", 1, 3
        else:
            base, schema = require_postgres(), f"envroute_test_{secrets.token_hex(6)}"
            stack.callback(drop_schema, base, schema)
            store_url, count, workers = with_schema(base, schema), 2, 2
        found = {name: stack.enter_context(upstream(name, directory)) for name in "ab"}
        config = write_config(directory, store_url,
                              'app = "tests.policies.placement_apps:identity_app"')
        urls = stack.enter_context(gateways(config, directory, count=count, workers=workers))
        yield Site(config, urls, found, count * workers)


def seen(site: Site, key: str, index: int) -> tuple[str, int | None]:
    """What one request saw (``"200 main tier=…"``, ``"200 a"``, ``"401 revoked_key"``…)
    and which worker answered, when the answer says."""
    url = site.urls[index % len(site.urls)]
    what, body = observe(requests.get(url, headers={"Authorization": f"Bearer {key}"},
                                      timeout=30))
    if what == "200 main":
        tier = body.get("metadata", {}).get("tier")
        return f"{what} tier={tier}", body.get("pid")
    return what, None


def run(site: Site, *args: str) -> None:
    envroute(site.config, *args)


@dataclass(frozen=True)
class Case:
    """``prepare(site, tag) -> (key, backend name)``, then ``change``; old and new state."""

    prepare: Callable[[Site, str], str]
    change: Callable[[Site, str], None]
    before: str
    after: str


def key_of(site: Site, *args: str) -> str:
    made = envroute_json(site.config, "keys", "create", "--environment", "production", *args)
    key: str = made["key"]
    return key


def customer_key(site: Site, tag: str, *meta: str) -> str:
    run(site, "customers", "create", tag, *[f"--meta={m}" for m in meta])
    return key_of(site, "--customer", tag)


def key_id(site: Site, tag: str) -> str:
    listed = envroute_json(site.config, "keys", "list", "--customer", tag)
    identifier: str = listed[0]["id"]
    return identifier


def disabled_key(site: Site, tag: str) -> str:
    key = customer_key(site, tag)
    run(site, "keys", "disable", key_id(site, tag))
    return key


def disabled_customer(site: Site, tag: str) -> str:
    key = customer_key(site, tag)
    run(site, "customers", "disable", tag)
    return key


def stored_backend(site: Site, tag: str) -> str:
    run(site, "backends", "add", f"dedicated-{tag}", "--url", site.upstreams["a"].url)
    return customer_key(site, tag, f"backend=dedicated-{tag}")


CASES = {
    "key-revoke": Case(customer_key, lambda s, t: run(s, "keys", "revoke", key_id(s, t)),
                       "200 main tier=None", "401 revoked_key"),
    "key-update": Case(lambda s, t: customer_key(s, t, "tier=free"),
                       lambda s, t: run(s, "keys", "update", key_id(s, t), "--meta",
                                        "tier=gold"),
                       "200 main tier=free", "200 main tier=gold"),
    "key-disable": Case(customer_key, lambda s, t: run(s, "keys", "disable", key_id(s, t)),
                        "200 main tier=None", "401 disabled_key"),
    "key-enable": Case(disabled_key, lambda s, t: run(s, "keys", "enable", key_id(s, t)),
                       "401 disabled_key", "200 main tier=None"),
    "customer-update": Case(lambda s, t: customer_key(s, t, "tier=free"),
                            lambda s, t: run(s, "customers", "update", t, "--meta",
                                             "tier=gold"),
                            "200 main tier=free", "200 main tier=gold"),
    "customer-disable": Case(customer_key, lambda s, t: run(s, "customers", "disable", t),
                             "200 main tier=None", "401 disabled_key"),
    "customer-enable": Case(disabled_customer, lambda s, t: run(s, "customers", "enable", t),
                            "401 disabled_key", "200 main tier=None"),
    "backend-add": Case(lambda s, t: customer_key(s, t, f"backend=dedicated-{t}"),
                        lambda s, t: run(s, "backends", "add", f"dedicated-{t}", "--url",
                                         s.upstreams["a"].url),
                        "502 backend_unavailable", "200 a"),
    "backend-update": Case(stored_backend,
                           lambda s, t: run(s, "backends", "update", f"dedicated-{t}",
                                            "--url", s.upstreams["b"].url),
                           "200 a", "200 b"),
    "backend-remove": Case(stored_backend,
                           lambda s, t: run(s, "backends", "remove", f"dedicated-{t}"),
                           "200 a", "502 backend_unavailable"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_change_reaches_every_worker_within_a_second(site: Site, case: Case) -> None:
    tag = f"c{secrets.token_hex(4)}"
    key = case.prepare(site, tag)
    rounds = 8 * site.workers  # enough that every worker answers, many times
    pids: set[int] = set()  # the workers that said who they are (only a 200 from main)
    deadline, index = time.monotonic() + 60, 0
    while index < rounds or 0 < len(pids) < site.workers:  # every worker caches the old
        what, pid = seen(site, key, index)
        index += 1
        assert what == case.before
        if pid is not None:
            pids.add(pid)
        assert time.monotonic() < deadline, f"only {len(pids)} workers answered"

    case.change(site, tag)
    changed = time.monotonic()
    run_of_new, index, started = 0, 0, changed
    while run_of_new < rounds:  # a long run in which every request sees the new state
        sent = time.monotonic()
        what, _ = seen(site, key, index)
        index += 1
        assert what in (case.before, case.after), what
        if what == case.after:
            started = sent if run_of_new == 0 else started
            run_of_new += 1
        else:
            run_of_new = 0
            assert sent - changed < PROPAGATION + SLACK, (
                f"{what!r} still answered {sent - changed:.1f}s after the change")
    assert started - changed < PROPAGATION + SLACK
