"""§12/§13 under load: moving a customer to a dedicated backend loses nothing.

Steady traffic from acme's live key (and from another customer, globex) runs through real
gunicorn gateways while an operator, with the console script, adds the stored backend
``dedicated-acme`` and moves acme there (``customers update acme --meta
backend=dedicated-acme``). The backends are real processes that say who they are, and the
requests are counted by the backend that answered:

- no request fails, before, during or after the move;
- every acme request sent before the move was on ``main``; every one started later than the
  propagation second (plus slack) after the update command returned is on
  ``dedicated-acme``;
- no globex request is ever on ``dedicated-acme``.

One gateway of three workers on SQLite; two gateways of two workers on one PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from .placement import (
    PROPAGATION,
    SLACK,
    envroute,
    envroute_json,
    gateways,
    observe,
    upstream,
    write_config,
)

pytestmark = pytest.mark.slow

#: acme requests that must be seen after the propagation window: enough to hit every
#: worker of every gateway many times over
AFTER = 40


@dataclass(frozen=True)
class Sent:
    customer: str
    started: float
    seen: str


class Traffic:
    """Threads sending back to back from each customer's key, round-robin over gateways."""

    def __init__(self, urls: list[str], keys: dict[str, str], threads: int = 2) -> None:
        self.urls, self.keys = urls, keys
        self.sent: list[Sent] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(customer, n), daemon=True)
                        for customer in keys for n in range(threads)]

    def _run(self, customer: str, offset: int) -> None:
        headers = {"Authorization": f"Bearer {self.keys[customer]}"}
        count = offset
        while not self.stopping.is_set():
            url = self.urls[count % len(self.urls)]
            count += 1
            started = time.monotonic()
            try:
                seen = observe(requests.get(url, headers=headers, timeout=30))[0]
            except requests.RequestException as exc:
                seen = f"error {type(exc).__name__}"
            with self.lock:
                self.sent.append(Sent(customer, started, seen))

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)

    def wait_for(self, customer: str, count: int, *, since: float,
                 timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count(customer, since) < count:
            assert time.monotonic() < deadline, (
                f"only {self.count(customer, since)} {customer} requests in {timeout}s")
            time.sleep(0.05)

    def count(self, customer: str, since: float) -> int:
        with self.lock:
            return sum(1 for s in self.sent if s.customer == customer and s.started >= since)


def by_backend(sent: list[Sent]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for one in sent:
        counts[one.seen] = counts.get(one.seen, 0) + 1
    return counts


def move_under_load(config: Path, urls: list[str], logs: Path) -> None:
    envroute(config, "customers", "create", "acme", "--name", "ACME")
    envroute(config, "customers", "create", "globex", "--name", "Globex")
    keys = {customer: envroute_json(config, "keys", "create", "--environment", "production",
                                    "--customer", customer)["key"]
            for customer in ("acme", "globex")}
    assert all(key.startswith("sk_live_") for key in keys.values())

    with ExitStack() as stack:  # the dedicated backend outlives the traffic
        dedicated = stack.enter_context(upstream("dedicated-acme", logs))
        traffic = stack.enter_context(Traffic(urls, keys))
        traffic.wait_for("acme", 20, since=0)  # steady traffic on the shared backend
        envroute(config, "backends", "add", "dedicated-acme", "--url", dedicated.url)
        moving = time.monotonic()
        envroute(config, "customers", "update", "acme", "--meta", "backend=dedicated-acme")
        moved = time.monotonic()
        settled = moved + PROPAGATION + SLACK
        traffic.wait_for("acme", AFTER, since=settled)
        traffic.wait_for("globex", AFTER, since=settled)
    sent = traffic.sent

    everything = by_backend(sent)
    assert set(everything) <= {"200 main", "200 dedicated-acme"}, everything
    before = by_backend([s for s in sent if s.customer == "acme" and s.started < moving])
    assert set(before) == {"200 main"}, before
    after = by_backend([s for s in sent if s.customer == "acme" and s.started >= settled])
    assert after == {"200 dedicated-acme": after.get("200 dedicated-acme", 0)}, after
    assert after["200 dedicated-acme"] >= AFTER
    globex = by_backend([s for s in sent if s.customer == "globex"])
    assert set(globex) == {"200 main"}, globex


def test_moving_a_customer_under_load_on_sqlite_loses_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'keys.db'}",
                          'url = "{main}"')
    with ExitStack() as stack:
        main = stack.enter_context(upstream("main", tmp_path))
        config.write_text(config.read_text().replace("{main}", main.url))
        urls = stack.enter_context(gateways(config, tmp_path, count=1, workers=3))
        move_under_load(config, urls, tmp_path)


@pytest.mark.postgres
def test_moving_a_customer_under_load_across_two_gateways_on_postgresql_loses_nothing(
    tmp_path: Path, pg_url: str
) -> None:
    config = write_config(tmp_path, pg_url, 'url = "{main}"')
    with ExitStack() as stack:
        main = stack.enter_context(upstream("main", tmp_path))
        config.write_text(config.read_text().replace("{main}", main.url))
        urls = stack.enter_context(gateways(config, tmp_path, count=2, workers=2))
        move_under_load(config, urls, tmp_path)


