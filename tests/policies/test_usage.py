"""Usage (§16): counted in memory per key per UTC day, written in batches by a timer.

Never a write per request, never in a request, never at import; a batch the store refuses
is kept and merged into the next one; ``close()`` writes what is pending.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from werkzeug.test import Client

from envroute import usage
from envroute.auth import ApiKeyVerifier, Authenticator
from envroute.config import parse_settings
from envroute.identity import Identity
from envroute.stores.base import UsageBatch
from envroute.usage import Flusher, UsageRecorder
from tests.support.apps import SECRET

from .conftest import GatewayFactory, config, manager
from .memstore import MemoryStore, OldStore


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def today() -> date:
    return datetime.now(UTC).date()


def totals(batches: list[UsageBatch]) -> dict[str, tuple[int, int]]:
    """Requests and errors per key over every batch (today only: a test is short)."""
    summed: dict[str, tuple[int, int]] = {}
    for batch in batches:
        for (key_id, _day), (requests, errors) in batch.counts.items():
            old = summed.get(key_id, (0, 0))
            summed[key_id] = (old[0] + requests, old[1] + errors)
    return summed


def authenticator(store: MemoryStore) -> Authenticator:
    return Authenticator(ApiKeyVerifier(store, parse_settings({"secret": SECRET})))


KEY = Identity(key_id="key_a", environment="sandbox")


# -- the recorder ---------------------------------------------------------------------------


@pytest.mark.parametrize(("statuses", "expected"), [
    pytest.param([200, 201, 304], (3, 0), id="successes"),
    pytest.param([200, 400, 404, 429, 502, 503], (6, 5), id="errors-are-400-and-up"),
    pytest.param([399, 400], (2, 1), id="boundary"),
])
def test_requests_and_errors_are_counted(statuses: list[int],
                                         expected: tuple[int, int]) -> None:
    store = MemoryStore()
    auth = authenticator(store)
    for status in statuses:
        auth.record(KEY, status)
    auth.flush()
    assert totals(store.batches) == {"key_a": expected}
    assert list(store.batches[0].counts) == [("key_a", today())]
    assert set(store.batches[0].last_used) == {"key_a"}
    auth.close()


def test_a_token_is_not_counted() -> None:
    store = MemoryStore()
    auth = authenticator(store)
    auth.record(Identity(key_id="user@example.com", environment="sandbox", source="jwt"), 200)
    auth.flush()
    assert store.batches == []
    assert not auth.flusher.started  # nothing to count: no timer either


def test_a_batch_is_in_a_stable_order() -> None:
    recorder = UsageRecorder(MemoryStore())
    for key_id in ["key_c", "key_a", "key_b", "key_a"]:
        recorder.record(key_id, False)
    batch = recorder.take()
    assert list(batch.last_used) == ["key_a", "key_b", "key_c"]
    assert [k for k, _ in batch.counts] == ["key_a", "key_b", "key_c"]


def test_a_failed_batch_is_kept_and_merged_into_the_next() -> None:
    store = MemoryStore()
    recorder = UsageRecorder(store)
    recorder.record("key_a", False)
    recorder.record("key_b", True)
    store.down = True
    assert recorder.flush() is False
    assert recorder.pending
    recorder.record("key_a", True)
    assert recorder.flush() is False  # still down: still kept
    store.down = False
    recorder.record("key_c", False)
    assert recorder.flush() is True
    assert len(store.batches) == 1  # everything in one batch once the store is back
    assert totals(store.batches) == {"key_a": (2, 1), "key_b": (1, 1), "key_c": (1, 0)}
    assert not recorder.pending


def test_a_store_without_daily_counts_still_gets_last_used() -> None:
    store = OldStore()
    recorder = UsageRecorder(store)
    recorder.record("key_a", False)
    assert recorder.flush() is True
    assert [set(b.last_used) for b in store.batches] == [{"key_a"}]


@pytest.mark.parametrize("round_", range(10))
def test_records_from_many_threads_add_up(round_: int) -> None:
    """Threads recording and flushing at once: nothing lost, nothing split. Two flushes
    draining at once took parts of one ``(key, error, time)`` triple each (a TypeError in
    one of them, counts lost): it failed once in a loaded full run; not every round can
    catch it, so there are ten, flushing often."""
    store = MemoryStore()
    recorder = UsageRecorder(store)

    def hammer() -> None:
        for n in range(2000):
            recorder.record(f"key_{n % 3}", n % 2 == 0)
            if n % 50 == 0:
                recorder.flush()

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.flush()
    summed = totals(store.batches)
    assert sum(r for r, _ in summed.values()) == 8000
    assert sum(e for _, e in summed.values()) == 4000


# -- the timer ------------------------------------------------------------------------------


def test_the_timer_starts_on_first_use_and_writes_by_itself(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage, "FLUSH_SECONDS", 0.05)
    store = MemoryStore()
    auth = authenticator(store)
    assert not auth.flusher.started  # not at construction (gunicorn forks after it)
    auth.record(KEY, 200)
    assert auth.flusher.started
    wait_for(lambda: totals(store.batches) == {"key_a": (1, 0)})
    auth.close()
    assert not auth.flusher.started


def test_close_writes_what_is_pending() -> None:
    store = MemoryStore()
    auth = authenticator(store)
    auth.record(KEY, 500)
    auth.close()
    assert totals(store.batches) == {"key_a": (1, 1)}


def test_a_failing_task_does_not_stop_the_others() -> None:
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    flusher = Flusher([broken, lambda: ran.append("ok")])
    flusher.run_once()
    assert ran == ["ok"]


def test_importing_envroute_registers_nothing_at_exit() -> None:
    script = (
        "import atexit\n"
        "seen = []\n"
        "real = atexit.register\n"
        "def spy(f, *a, **k):\n"
        "    seen.append(getattr(f, '__module__', '') or '')\n"
        "    return real(f, *a, **k)\n"
        "atexit.register = spy\n"
        "import envroute, envroute.auth, envroute.usage, envroute.gateway, envroute.secrets\n"
        "print([m for m in seen if m.startswith('envroute')])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_drops_its_parents_counts() -> None:
    store = MemoryStore()
    auth = authenticator(store)
    auth.record(KEY, 200)  # the parent's count, started the parent's timer
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own empty recorder, no timer until it records
        answer = b"ok" if not auth.usage.pending and not auth.flusher.started else b"bad"
        os.write(write, answer)
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 10) == b"ok"
    os.close(read)
    auth.close()
    assert totals(store.batches) == {"key_a": (1, 0)}


# -- through the gateway, on every store ----------------------------------------------------


def test_usage_through_the_gateway_is_batched(make_gateway: GatewayFactory,
                                              any_store_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    settings = config(any_store_url)
    settings["routes"] = settings["routes"][:1]  # production keys: 403 no_route
    gateway = make_gateway(settings)
    keys = manager(gateway)
    sandbox, production = keys.create("sandbox"), keys.create("production")
    store = gateway.store
    batches: list[UsageBatch] = []
    real_write = store.write_usage

    def spy(batch: UsageBatch) -> Any:
        batches.append(batch)
        return real_write(batch)

    monkeypatch.setattr(store, "write_usage", spy)
    client = Client(gateway)

    def get(secret: str) -> int:
        return client.get("/v1/x", headers={"Authorization": f"Bearer {secret}"}).status_code

    assert [get(sandbox.secret) for _ in range(20)] == [200] * 20
    assert [get(production.secret) for _ in range(5)] == [403] * 5
    assert get("sk_test_" + "x" * 38) == 401  # not authenticated: not counted
    gateway.authenticator.flush()
    assert totals(batches) == {sandbox.record.id: (20, 0), production.record.id: (5, 5)}
    for issued in (sandbox, production):
        assert keys.get(issued.record.id).last_used_at is not None
    gateway.authenticator.close()


def test_an_outage_is_logged_when_it_starts_and_ends_only(
        caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    recorder = UsageRecorder(store)
    store.down = True
    with caplog.at_level(logging.INFO, logger="envroute"):
        for _ in range(5):
            recorder.record("key_a", False)
            assert recorder.flush() is False
        store.down = False
        assert recorder.flush() is True
        assert recorder.flush() is True
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("could not write key usage (1 keys)")
    assert "after 5 failed attempts" in lines[1]
    assert totals(store.batches) == {"key_a": (5, 0)}
