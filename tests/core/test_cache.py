"""The bounded LRU with expiry that holds verified keys, refusals and customers."""

from __future__ import annotations

import threading

import pytest

from envroute.cache import LRUCache


def filled(maxsize: int, keys: str) -> LRUCache[str, str]:
    cache: LRUCache[str, str] = LRUCache(maxsize, ttl=60.0)
    for key in keys:
        cache.put(key, key.upper())
    return cache


@pytest.mark.parametrize(("maxsize", "puts", "reads", "more", "kept"), [
    pytest.param(3, "abc", "", "d", "bcd", id="oldest-evicted"),
    pytest.param(3, "abc", "a", "d", "acd", id="a-read-keeps-an-entry"),
    pytest.param(3, "abc", "", "a", "abc", id="a-put-refreshes"),
    pytest.param(1, "abc", "", "", "c", id="one-entry"),
    pytest.param(3, "ab", "zz", "", "ab", id="misses-change-nothing"),
])
def test_least_recently_used_is_evicted(maxsize: int, puts: str, reads: str, more: str,
                                        kept: str) -> None:
    cache = filled(maxsize, puts)
    for key in reads:
        cache.get(key)
    for key in more:
        cache.put(key, key.upper())
    assert sorted(k for k in "abcdz" if k in cache) == sorted(kept)
    assert len(cache) == len(kept)


def test_an_expired_entry_is_a_miss() -> None:
    cache: LRUCache[str, int] = LRUCache(10, ttl=60.0)
    cache.put("old", 1, ttl=0.0)
    cache.put("new", 2)
    assert cache.get("old") is None and "old" not in cache
    assert cache.get("new") == 2


def test_discard_where_drops_only_matching_entries() -> None:
    cache = filled(10, "abcd")
    assert cache.discard_where(lambda value: value in {"A", "C"}) == 2
    assert sorted(k for k in "abcd" if k in cache) == ["b", "d"]
    cache.discard("b")
    cache.discard("missing")
    cache.clear()
    assert len(cache) == 0


def test_a_cache_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError, match="at least one"):
        LRUCache(0, ttl=1.0)


def test_concurrent_reads_writes_and_invalidation_stay_bounded() -> None:
    cache: LRUCache[int, int] = LRUCache(50, ttl=60.0)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for n in range(3000):
                key = (n * 7 + seed) % 200
                cache.put(key, key)
                value = cache.get((key + 3) % 200)
                assert value is None or value == (key + 3) % 200
                if n % 300 == 0:
                    cache.discard_where(lambda v: v % 2 == 0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(cache) <= 50
