"""Per-process cache of learners' recommendations, invalidated by what they depend on.

A recommendation is a function of the learner's interactions, the active Main Brain and the
learner's personal model. Before serving, one small query (aivo.services.recommendations.
serving_lookup) reads a *stamp* of those inputs:
the learner's interaction count and last position, the active version's artifact digest and
the learner's brain model (artifact, status, last update). A cached entry is served only when
its stamp is equal, so new interactions (through any worker, the CLI or an import), a
promotion, a rollback or a retrained clone invalidate it at once, in every worker, without any
message between processes. Entries also expire after `AIVO_RECOMMENDATION_CACHE_TTL_S`
because REVIEW decisions depend on the time since practice.

The stamp is read *before* computing: if interactions arrive during the computation, the entry
is stored under the older stamp and the next request recomputes. A stale recommendation is
never stored under a newer stamp.

Concurrent misses for the same learner compute once (the others wait for that result).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

@dataclass
class _Entry(Generic[T]):
    stamp: tuple[Any, ...]
    value: T
    expires_at: float


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    waits: int = 0  # requests that waited for another request's computation of the same entry


class RecommendationCache(Generic[T]):
    def __init__(self, *, ttl_s: float, max_entries: int, monotonic: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._now = monotonic
        self._entries: OrderedDict[tuple, _Entry[T]] = OrderedDict()
        self._inflight: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def _fresh(self, key: tuple, stamp: tuple) -> _Entry[T] | None:
        entry = self._entries.get(key)
        if entry is not None and entry.stamp == stamp and entry.expires_at > self._now():
            self._entries.move_to_end(key)
            return entry
        return None

    def get(self, key: tuple, stamp: tuple) -> T | None:
        """The fresh entry or None, without waiting (safe on the event loop)."""
        if self.ttl_s <= 0:
            return None
        with self._lock:
            entry = self._fresh(key, stamp)
            if entry is not None:
                self.stats.hits += 1
                return entry.value
        return None

    def get_or_compute(self, key: tuple, stamp: tuple, compute: Callable[[], T]) -> tuple[T, bool]:
        """(value, served_from_cache). Blocking; call from a worker thread."""
        if self.ttl_s <= 0:
            return compute(), False
        with self._lock:
            entry = self._fresh(key, stamp)
            if entry is not None:
                self.stats.hits += 1
                return entry.value, True
            flight = self._inflight.setdefault(key, threading.Lock())
        with flight:  # one computation per key at a time; latecomers find its result
            with self._lock:
                entry = self._fresh(key, stamp)
                if entry is not None:
                    self.stats.waits += 1
                    return entry.value, True
                self.stats.misses += 1
            try:
                value = compute()
                with self._lock:
                    self._entries[key] = _Entry(stamp, value, self._now() + self.ttl_s)
                    self._entries.move_to_end(key)
                    while len(self._entries) > self.max_entries:
                        self._entries.popitem(last=False)
                return value, False
            finally:
                with self._lock:
                    if self._inflight.get(key) is flight:
                        del self._inflight[key]

    def invalidate_learners(self, learner_pks: set[int]) -> int:
        """Drop entries of these learners now (an optimisation: the stamp would catch them)."""
        with self._lock:
            doomed = [k for k in self._entries if k[0] in learner_pks]
            for k in doomed:
                del self._entries[k]
        return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
