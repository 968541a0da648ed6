"""Recommendations from cached learner states equal recommendations computed from scratch.

A real SQLite registry with a simulated cohort (grades, subjects, item types, timestamps) and a
tiny Main Brain whose context (max_seq_len 16) the histories outgrow, so appends also cross
context rebuilds. After every ingest the cached path (reads only the new rows) must give the
same recommendation, field for field, as a cache that never saw the learner and as
`recommend_with_brain` on the history `load_interactions` reads."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
import torch

from aivo.clock import FrozenClock
from aivo.config import Settings
from aivo.data.schema import make_log
from aivo.data.simulator import SimulatorConfig, simulate_cohort
from aivo.registry import import_interactions, load_interactions, open_registry
from aivo.services.learners import pseudonym_for
from aivo.services.main_brain import train_main_version
from aivo.services.recommendation_engine import LearnerCache
from aivo.services.recommendations import (
    policy_from_settings,
    recommend_for_learner,
    recommend_with_brain,
    serving_brain,
)
from tests.brain.helpers import tiny_config

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("home"), secret_key="engine-tests-secret-key-0123456789abcd",
                        num_threads=1)
    registry = open_registry(settings)
    cohort = simulate_cohort(config=SimulatorConfig(num_learners=16, interactions_per_learner=14), seed=3)
    with registry.session() as session:
        import_interactions(session=session, log=cohort.log, secret_key=settings.resolved_secret_key())
    torch.set_num_threads(1)
    train_main_version(registry=registry, settings=settings, config=tiny_config(max_seq_len=16), seed=0,
                       actor="tests", promote="always")
    return settings, registry, cohort.log.frame


def ingest(world, learner: str, rows: list[dict]) -> None:
    settings, registry, _ = world
    frame = pd.DataFrame([{"learner_id": learner, **row} for row in rows])
    with registry.session() as session:
        import_interactions(session=session, log=make_log(frame), secret_key=settings.resolved_secret_key())


def recommendation(world, pseudonym: str, learners: LearnerCache, policy: str) -> dict:
    settings, registry, _ = world
    return asdict(recommend_for_learner(registry=registry, settings=settings, learner_id=pseudonym, num_items=4,
                                        clock=FrozenClock(NOW), policy_name=policy, learners=learners))


def from_scratch(world, pseudonym: str, policy: str) -> tuple[dict, dict]:
    """(a cache that never saw the learner, recommend_with_brain on the loaded log)."""
    settings, registry, _ = world
    fresh = recommendation(world, pseudonym, LearnerCache(max_learners=4), policy)
    with registry.session(read_only=True) as session:
        history = load_interactions(session=session, learner_ids=[pseudonym])
    direct = recommend_with_brain(brain=serving_brain(registry=registry, learner_id=pseudonym),
                                  learner_id=pseudonym, history=history,
                                  policy=policy_from_settings(settings, num_items=4), now=NOW, policy_name=policy)
    return fresh, asdict(direct)


@pytest.mark.parametrize("policy", ["aivo-gain", "aivo-target"])
def test_appended_state_gives_the_recommendation_from_scratch(world, policy):
    settings, _, frame = world
    learner = sorted(frame["learner_id"].astype(str).unique())[0 if policy == "aivo-gain" else 1]
    pseudonym = pseudonym_for(settings=settings, learner_id=learner)
    cache = LearnerCache(max_learners=4)
    first = recommendation(world, pseudonym, cache, policy)
    assert first == from_scratch(world, pseudonym, policy)[0]
    known = frame.loc[frame["learner_id"].astype(str) == learner]
    items = known["item_id"].astype(str).tolist()
    last = int(known["order"].max())
    stamp = pd.Timestamp(known["timestamp"].max())
    batches = [  # catalog items, an item the brain never saw (no skill), no timestamp, ...
        [{"item_id": items[0], "skill_ids": known["skill_ids"].iloc[0], "correct": 1}],
        [{"item_id": "new-item", "correct": 0}, {"item_id": items[1], "correct": 1}],
        [{"item_id": items[2], "correct": i % 2} for i in range(5)],  # past max_seq_len 16: a rebuild
    ]
    for batch in batches:
        rows = []
        for row in batch:
            last += 1
            stamp += timedelta(minutes=3)
            when = None if row["item_id"] == "new-item" else stamp.isoformat()
            rows.append({**row, "order": last, "timestamp": when})
        ingest(world, learner, rows)
        appended = cache.appended
        cached = recommendation(world, pseudonym, cache, policy)
        assert cache.appended == appended + 1  # read only the new rows
        fresh, direct = from_scratch(world, pseudonym, policy)
        assert fresh == direct, batch
        assert cached == fresh, batch
    assert cached != first  # the answers changed the recommendation
    assert recommendation(world, pseudonym, cache, policy) == cached and cache.reused >= 1


def test_a_row_stored_before_the_last_reads_the_history_again(world):
    settings, _, frame = world
    learner = sorted(frame["learner_id"].astype(str).unique())[2]
    pseudonym = pseudonym_for(settings=settings, learner_id=learner)
    cache = LearnerCache(max_learners=4)
    recommendation(world, pseudonym, cache, "aivo-gain")
    known = frame.loc[frame["learner_id"].astype(str) == learner]
    ingest(world, learner, [{"item_id": known["item_id"].iloc[0], "correct": 1, "order": 10_000}])
    recommendation(world, pseudonym, cache, "aivo-gain")
    rebuilt = cache.rebuilt
    ingest(world, learner, [{"item_id": known["item_id"].iloc[1], "correct": 0, "order": 5_000}])  # before the last
    cached = recommendation(world, pseudonym, cache, "aivo-gain")
    assert cache.rebuilt == rebuilt + 1
    assert cached == from_scratch(world, pseudonym, "aivo-gain")[0]


def test_unknown_learner_is_not_found(world):
    from aivo.errors import NotFoundError

    with pytest.raises(NotFoundError):
        recommendation(world, "no-such-pseudonym", LearnerCache(max_learners=2), "aivo-gain")
