"""The small parts behind the stores: change payloads, channel names, the call deadline
and the change marker. (The store contract itself is in the other files here.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from envroute.stores import Change
from envroute.stores.deadline import Watchdog
from envroute.stores.marker import ChangeMarker


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.mark.parametrize(("text", "change"), [
    pytest.param("key:key_1", Change("key", "key_1"), id="key"),
    pytest.param("customer:acme:eu", Change("customer", "acme:eu"), id="colon-in-id"),
    pytest.param("backend:dedicated-1", Change("backend", "dedicated-1"), id="backend"),
    pytest.param("all:", Change("all"), id="all"),
    pytest.param("key:", Change("all"), id="no-target"),
    pytest.param("key_1", Change("all"), id="a-0.1-payload"),
    pytest.param("", Change("all"), id="empty"),
])
def test_payloads(text: str, change: Change) -> None:
    pytest.importorskip("psycopg")
    from envroute.stores.pglisten import parse_payload, payload

    assert parse_payload(text) == change
    if change.target:
        assert parse_payload(payload(change)) == change


@pytest.mark.parametrize(("schema", "expected"), [
    pytest.param("", "envroute_changes", id="no-schema"),
    pytest.param("tenant_1", "envroute_changes_tenant_1", id="schema"),
])
def test_channels_are_scoped_by_schema(schema: str, expected: str) -> None:
    pytest.importorskip("psycopg")
    from envroute.stores.postgres import channel_name

    assert channel_name(schema) == expected
    long = channel_name("s" * 63)
    assert len(long) <= 63 and long != channel_name("t" * 63)


def test_the_watchdog_fires_only_for_calls_still_running() -> None:
    watchdog = Watchdog()
    fired: list[str] = []
    with watchdog.guard(0.05, lambda: fired.append("slow")):
        wait_for(lambda: fired == ["slow"])
    with watchdog.guard(60, lambda: fired.append("quick")):
        pass
    done = threading.Event()
    with watchdog.guard(0.05, done.set):  # a later deadline still fires after the long one
        wait_for(done.is_set)
    assert fired == ["slow"]


def test_the_marker_tells_subscribers_of_another_writer(tmp_path: Path) -> None:
    path = str(tmp_path / "keys.db.changes")
    watching, writing = ChangeMarker(path), ChangeMarker(path)
    heard: list[Change] = []
    watching.subscribe(heard.append)
    watching.watch()
    try:
        writing.bump()
        wait_for(lambda: heard == [Change("all")])
        writing.bump()
        wait_for(lambda: len(heard) == 2)
    finally:
        watching.stop()


def test_an_unwritable_marker_is_one_warning(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    marker = ChangeMarker(str(tmp_path / "missing" / "keys.db.changes"))
    marker.bump()
    marker.bump()
    assert len([r for r in caplog.records if "change marker" in r.getMessage()]) == 1
