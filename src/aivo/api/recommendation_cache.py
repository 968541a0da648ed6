"""Per-process cache of learners' recommendations, invalidated by what they depend on.

A recommendation is a function of the learner's interactions, the active Main Brain and the
learner's personal model. Before serving, one small query reads a *stamp* of those inputs:
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

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.registry.tables import ApiKeyLearner
from aivo.registry.tables import Interaction, Learner, LearnerModel, MainModelVersion

T = TypeVar("T")

_it = Interaction.__table__
_lm = LearnerModel.__table__
_mv = MainModelVersion.__table__
_l = Learner.__table__
_akl = ApiKeyLearner.__table__


def _of_learner(column, *where):
    return sa.select(column).where(*where).scalar_subquery()


# One round trip for the whole serving decision: the learner (tenant, teacher link) and the
# stamp. Every subquery is served by an index: learners (pseudonym), api_key_learners (pk),
# interactions (learner_id, position), the partial unique index on the active version,
# learner_models (learner_id, kind).
_LOOKUP = sa.select(
    _l.c.id, _l.c.tenant,
    sa.exists().where(_akl.c.api_key_id == sa.bindparam("key_pk"), _akl.c.learner_id == _l.c.id),
    _of_learner(sa.func.count(), _it.c.learner_id == _l.c.id),
    _of_learner(sa.func.max(_it.c.position), _it.c.learner_id == _l.c.id),
    _of_learner(_mv.c.artifact_sha256, _mv.c.status == "active"),
    _of_learner(_mv.c.version, _mv.c.status == "active"),
    *(_of_learner(column, _lm.c.learner_id == _l.c.id, _lm.c.kind == "brain")
      for column in (_lm.c.status, _lm.c.artifact_sha256, _lm.c.updated_at)),
).where(_l.c.pseudonym == sa.bindparam("pseudonym"))


@dataclass(frozen=True)
class ServingStamp:
    learner_pk: int
    num_interactions: int
    last_position: int | None
    active_artifact: str | None
    active_version: str | None
    personal_model: str | None

    def key(self) -> tuple[Any, ...]:
        return (self.learner_pk, self.num_interactions, self.last_position, self.active_artifact,
                self.personal_model)


@dataclass(frozen=True)
class ServingLookup:
    tenant: str | None  # None: no such learner
    linked: bool  # on the asking key's class list
    stamp: ServingStamp | None


def serving_lookup(*, session: Session, pseudonym: str, key_pk: int) -> ServingLookup:
    row = session.execute(_LOOKUP, {"pseudonym": pseudonym, "key_pk": key_pk}).first()
    if row is None:
        return ServingLookup(tenant=None, linked=False, stamp=None)
    pk, tenant, linked, count, last, artifact, version, status, personal_artifact, updated = row
    personal = None if status is None else f"{status}:{personal_artifact or ''}:{updated}"
    stamp = ServingStamp(learner_pk=pk, num_interactions=int(count), last_position=last, active_artifact=artifact,
                         active_version=version, personal_model=personal)
    return ServingLookup(tenant=tenant, linked=bool(linked), stamp=stamp)


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
