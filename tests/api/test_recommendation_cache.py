"""The recommendation cache on its own: stamps, expiry, size bound, one computation per key."""

from __future__ import annotations

import threading
import time

from aivo.api.recommendation_cache import RecommendationCache


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_same_stamp_hits_other_stamp_recomputes():
    cache = RecommendationCache(ttl_s=60, max_entries=10)
    calls = []

    def compute(tag):
        return lambda: calls.append(tag) or tag

    assert cache.get_or_compute((1, 5), ("s1",), compute("a")) == ("a", False)
    assert cache.get_or_compute((1, 5), ("s1",), compute("b")) == ("a", True)
    assert cache.get((1, 5), ("s1",)) == "a"
    assert cache.get((1, 5), ("s2",)) is None  # new interactions: a different stamp
    assert cache.get_or_compute((1, 5), ("s2",), compute("c")) == ("c", False)
    assert calls == ["a", "c"]
    assert (cache.stats.hits, cache.stats.misses) == (2, 2)


def test_entries_expire_after_the_ttl():
    clock = FakeMonotonic()
    cache = RecommendationCache(ttl_s=30, max_entries=10, monotonic=clock)
    cache.get_or_compute((1, 5), ("s",), lambda: "old")
    clock.now += 29
    assert cache.get((1, 5), ("s",)) == "old"
    clock.now += 2
    assert cache.get((1, 5), ("s",)) is None
    assert cache.get_or_compute((1, 5), ("s",), lambda: "new") == ("new", False)


def test_size_is_bounded_least_recently_used_first():
    cache = RecommendationCache(ttl_s=60, max_entries=2)
    for learner in (1, 2):
        cache.get_or_compute((learner, 5), ("s",), lambda: learner)
    cache.get((1, 5), ("s",))  # 1 is now the most recently used
    cache.get_or_compute((3, 5), ("s",), lambda: 3)
    assert len(cache) == 2
    assert cache.get((2, 5), ("s",)) is None and cache.get((1, 5), ("s",)) == 1


def test_zero_ttl_disables_the_cache():
    cache = RecommendationCache(ttl_s=0, max_entries=2)
    assert cache.get_or_compute((1, 5), ("s",), lambda: "x") == ("x", False)
    assert cache.get((1, 5), ("s",)) is None and len(cache) == 0


def test_concurrent_misses_compute_once():
    cache = RecommendationCache(ttl_s=60, max_entries=10)
    started = threading.Event()
    calls = []

    def slow():
        calls.append(1)
        started.set()
        time.sleep(0.2)
        return "value"

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_compute((7, 5), ("s",), slow)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(results) == [("value", False)] + [("value", True)] * 7


def test_invalidate_learners():
    cache = RecommendationCache(ttl_s=60, max_entries=10)
    cache.get_or_compute((1, 5), ("s",), lambda: "a")
    cache.get_or_compute((1, 3), ("s",), lambda: "b")
    cache.get_or_compute((2, 5), ("s",), lambda: "c")
    assert cache.invalidate_learners({1}) == 2
    assert cache.get((2, 5), ("s",)) == "c" and cache.get((1, 5), ("s",)) is None
