"""The counters behind rate limits: memory and Redis agree, step by step, on a fixed clock."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from envroute.counters import Check, Counter, MemoryCounter, RedisCounter

STRATEGIES = ["moving-window", "fixed-window", "sliding-window-counter"]


@pytest.fixture(params=["memory", "redis"])
def make(request: pytest.FixtureRequest) -> Iterator[type]:
    built: list[Counter] = []

    def factory(strategy: str) -> Counter:
        if request.param == "memory":
            counter: Counter = MemoryCounter(strategy)
        else:
            url = request.getfixturevalue("redis_url")
            counter = RedisCounter(url, strategy, prefix=f"T{secrets.token_hex(6)}",
                                   timeout=1.0)
        built.append(counter)
        return counter

    yield factory  # type: ignore[misc]
    for counter in built:
        counter.close()


def key(window: int) -> str:
    return f"test/{secrets.token_hex(4)}/{window}"


# (seconds after the start, allowed?) for a limit of 2 per 10 s
SEQUENCES = {
    "moving-window": [(0, True), (1, True), (2, False), (9, False), (10.5, True),
                      (11.5, True), (12, False)],
    "fixed-window": [(0, True), (1, True), (2, False), (9, False), (10.5, True),
                     (11.5, True), (12, False)],
    "sliding-window-counter": [(0, True), (1, True), (2, False), (25, True), (26, True),
                               (27, False)],
}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_strategies_on_a_fixed_clock(make: type, strategy: str) -> None:
    counter = make(strategy)
    check = Check(key(10), 2, 10)
    start = 1_000_000_000.0 + 10 * secrets.randbelow(1000)  # aligned to the window
    for offset, allowed in SEQUENCES[strategy]:
        outcome = counter.acquire([check], start + offset, False)
        assert (outcome.refused == -1) is allowed, (offset, outcome)
        remaining, reset = outcome.stats[0]
        assert 0 <= remaining <= 2
        assert start + offset < reset <= start + offset + 10


def test_the_first_limit_over_stops_the_walk(make: type) -> None:
    counter = make("moving-window")
    tight, loose, after = Check(key(60), 1, 60), Check(key(60), 5, 60), Check(key(60), 5, 60)
    assert counter.acquire([loose, tight, after], 100.0, False).refused == -1
    outcome = counter.acquire([loose, tight, after], 101.0, False)
    assert outcome.refused == 1 and len(outcome.stats) == 2
    assert outcome.stats[0][0] == 3  # the limit before it was spent
    assert counter.acquire([after], 102.0, False).stats[0][0] == 3  # the one after was not


def test_a_dry_run_counts_nothing(make: type) -> None:
    counter = make("moving-window")
    check = Check(key(60), 1, 60)
    for _ in range(3):
        outcome = counter.acquire([check], 100.0, True)
        assert outcome.refused == -1 and outcome.stats[0][0] == 0
    assert counter.acquire([check], 100.0, False).refused == -1
    assert counter.acquire([check], 100.0, True).refused == 0


def test_memory_forgets_idle_subjects() -> None:
    counter = MemoryCounter("moving-window")
    for index in range(100):
        counter.acquire([Check(f"k/{index}/10", 5, 10)], 100.0, False)
    counter._until_sweep = 1  # the next call sweeps
    counter.acquire([Check("k/live/10", 5, 10)], 200.0, False)
    assert list(counter._state) == ["k/live/10"]
