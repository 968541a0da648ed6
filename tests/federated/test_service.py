"""The aggregation service on SQLite and PostgreSQL: rounds, gate, dry run, eligibility, budget, bad updates."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
import torch

from aivo.federated.gate import GateData, tail_rows
from aivo.services.aggregation import AggregationOptions, run_aggregation
from aivo.federated.updates import update_metadata
from aivo.services.clones import provision_clones
from aivo.services.local_training import train_learner
from aivo.privacy.ledger import get_ledgers
from aivo.registry import (
    get_active_main_version,
    get_eligible_for_aggregation,
    list_federated_updates,
    load_interactions,
    record_training_session,
)
from aivo.registry.tables import Base


def trained(world, clock, count):
    """Clone and locally train the first `count` learners."""
    learners = world.learners[:count]
    provision_clones(registry=world.registry, settings=world.settings, learner_ids=learners, clock=clock)
    for learner in learners:
        train_learner(registry=world.registry, settings=world.settings, learner_id=learner, clock=clock)
    return learners


def options(**overrides):
    values = dict(min_learners=3, max_stale_days=7, dp_enabled=False, sample_rate=1.0, gate_margin=1.0,
                  gate_max_learners=10, seed=1)
    values.update(overrides)
    return AggregationOptions(**values)


def aggregate(world, clock, **overrides):
    return run_aggregation(registry=world.registry, options=options(**overrides), actor="tests", clock=clock)


def snapshot(world) -> tuple[dict, set]:
    """Every row of every table, and the artifacts in the store."""
    rows = {}
    with world.registry.session(read_only=True) as session:
        for table in Base.metadata.sorted_tables:
            rows[table.name] = sorted(map(repr, session.execute(sa.select(table)).all()))
    return rows, {a.sha256 for a in world.registry.store.iter_artifacts()}


def test_a_round_promotes_records_marks_and_charges(world, clock):
    learners = trained(world, clock, 6)
    report = aggregate(world, clock, dp_enabled=True, noise_multiplier=1.0, clip_norm=0.5, sample_rate=0.9,
                       epsilon_budget=50.0)
    assert report.status == "applied" and report.promoted, report.message
    with world.registry.session(read_only=True) as session:
        assert get_active_main_version(session=session).version == report.version_after
        update = list_federated_updates(session=session)[0]
        assert update.id == report.federated_update_id and update.status == "applied"
        assert update.num_contributors == report.counts["accepted"] > 0
        assert update.privacy["noise_multiplier"] == 1.0 and update.privacy["epsilon_one_round"] > 0
        assert update.metrics_before["auc"] is not None
        eligible = get_eligible_for_aggregation(session=session, max_stale_days=7, clock=clock)
        ledgers = get_ledgers(session=session, learner_ids=learners)
    sampled = report.counts["sampled"]
    assert len(eligible) == len(learners) - sampled  # the sampled contributions are consumed
    assert all(r.rounds_eligible == 1 for r in ledgers.values())  # the whole pool is charged
    assert sum(r.rounds_sampled for r in ledgers.values()) == sampled


def test_dry_run_changes_nothing(world, clock):
    trained(world, clock, 5)
    before = snapshot(world)
    report = aggregate(world, clock, dry_run=True)
    assert report.status == "dry-run" and report.would_promote is not None and report.metrics_after
    assert snapshot(world) == before
    report = aggregate(world, clock, dry_run=True, min_learners=50)
    assert report.status == "skipped" and snapshot(world) == before


def test_too_few_learners_means_no_update(world, clock):
    trained(world, clock, 2)
    before = snapshot(world)
    report = aggregate(world, clock, min_learners=3)
    assert report.status == "skipped" and "at least 3 needed" in report.message
    assert snapshot(world) == before


def test_stale_learners_are_not_eligible(world, clock):
    trained(world, clock, 4)
    clock.advance(days=8)
    report = aggregate(world, clock, min_learners=1, max_stale_days=7)
    assert report.status == "skipped" and report.counts["eligible"] == 0


def test_budget_exclusion(world, clock):
    learners = trained(world, clock, 4)
    # q = 1, sigma = 1: one round costs ~4.7, so a budget of 6 allows one round and not two.
    first = aggregate(world, clock, dp_enabled=True, noise_multiplier=1.0, epsilon_budget=6.0, min_learners=1)
    assert first.counts["pool"] == 4 and first.status in ("applied", "rejected")
    clock.advance(hours=1)
    for learner in learners:  # new sessions against the (possibly new) active version
        train_learner(registry=world.registry, settings=world.settings, learner_id=learner, clock=clock)
    second = aggregate(world, clock, dp_enabled=True, noise_multiplier=1.0, epsilon_budget=6.0, min_learners=1)
    assert second.status == "skipped" and second.counts["over_budget"] == 4 and second.counts["pool"] == 0


def test_updates_built_against_another_version_are_rejected(world, clock):
    trained(world, clock, 4)
    first = aggregate(world, clock, sample_rate=1.0)
    assert first.promoted
    trained(world, clock, 5)  # learners 0-4 train against the new version
    with world.registry.session() as session:  # then learner 4 records a session built against the old one
        record_training_session(session=session, store=world.registry.store, learner_id=world.learners[4], epochs=1,
                                batch_size=1, samples=5, main_version=world.version, update_artifact=None,
                                clock=clock)
    report = aggregate(world, clock, min_learners=1)
    reasons = [r["reason"] for r in report.rejected]
    assert any(f"built against main version {world.version!r}" in r for r in reasons)
    assert report.counts["stale_version"] == 1
    with world.registry.session(read_only=True) as session:  # the reason is recorded with the round
        recorded = list_federated_updates(session=session)[0]
    assert any(f"built against main version {world.version!r}" in r["reason"] and r["learner_id"] == world.learners[4]
               for r in recorded.details["rejected"])


def test_bad_updates_are_rejected_with_their_reason(world, clock):
    learners = trained(world, clock, 4)
    version = world.version
    spec_source = world.registry.store.load_tensors
    with world.registry.session(read_only=True) as session:
        good = get_eligible_for_aggregation(session=session, max_stale_days=7, clock=clock)[0]
    tensors, _ = spec_source(good.update_artifact_sha256)
    poisoned = {k: v.clone() for k, v in tensors.items()}
    first = next(iter(poisoned))
    poisoned[first].view(-1)[0] = float("nan")
    wrong_shape = {k: (torch.zeros(3) if k == first else v) for k, v in tensors.items()}
    clock.advance(minutes=1)
    for learner, bad in zip(learners[:2], (poisoned, wrong_shape)):
        ref = world.registry.store.put_tensors(bad, metadata=update_metadata(main_version=version, num_examples=9))
        with world.registry.session() as session:
            record_training_session(session=session, store=world.registry.store, learner_id=learner, epochs=1,
                                    batch_size=1, samples=9, update_artifact=ref, clock=clock)
    report = aggregate(world, clock, min_learners=1)
    reasons = {r["learner_id"]: r["reason"] for r in report.rejected}
    assert "NaN or Inf" in reasons[learners[0]] and "shape (3,)" in reasons[learners[1]]
    assert report.counts["accepted"] == 2
    with world.registry.session(read_only=True) as session:
        recorded = list_federated_updates(session=session)[0]
    assert {r["learner_id"] for r in recorded.details["rejected"]} == set(learners[:2])
    assert recorded.num_contributors == 2


def test_the_gate_refuses_a_worse_candidate(world, clock):
    trained(world, clock, 4)
    # A huge server step with a zero margin: the candidate is worse, so it is not promoted.
    report = aggregate(world, clock, server_learning_rate=500.0, clip_norm=10.0, gate_margin=0.0)
    assert report.status == "rejected" and not report.promoted and report.improvement < 0
    with world.registry.session(read_only=True) as session:
        assert get_active_main_version(session=session).version == world.version
        update = list_federated_updates(session=session)[0]
    assert update.status == "rejected" and update.version_after is None


def test_gate_scores_only_held_out_tails(world):
    with world.registry.session(read_only=True) as session:
        log = load_interactions(session=session, learner_ids=world.learners[:3])
    rows = tail_rows(log, 0.2)
    per_learner = log.frame.assign(tail=rows).groupby("learner_id")["tail"]
    assert (per_learner.sum() == np.ceil(0.2 * per_learner.size())).all()
    assert GateData(log=log, scored_rows=rows).num_learners == 3


def test_erasing_a_learner_while_a_round_runs_lets_the_round_finish_without_them(world, clock, monkeypatch):
    """Issue 14: an erasure between sampling and commit crashed the round ('1 charged learners
    do not exist'). The round finishes; the erased learner is neither charged nor left behind."""
    import aivo.federated.round as service
    from aivo.registry import delete_learner

    learners = trained(world, clock, 6)
    erased = learners[0]
    real = service.aggregate_updates

    def erase_then_aggregate(**kwargs):
        with world.registry.session() as session:
            delete_learner(session=session, store=world.registry.store, learner_id=erased, actor="tests",
                           reason="erasure request during a round", clock=clock)
        return real(**kwargs)

    monkeypatch.setattr(service, "aggregate_updates", erase_then_aggregate)
    report = aggregate(world, clock, dp_enabled=True, noise_multiplier=1.0, clip_norm=0.5, sample_rate=1.0,
                       epsilon_budget=50.0)
    assert report.status in ("applied", "rejected") and report.federated_update_id is not None, report.message
    assert report.counts["erased_during_round"] == 1
    with world.registry.session(read_only=True) as session:
        ledgers = get_ledgers(session=session, learner_ids=learners)
        remaining = set(session.scalars(sa.text("SELECT pseudonym FROM learners")))
    assert erased not in remaining
    assert all(ledgers[lid].rounds_eligible == 1 for lid in learners[1:])
    assert ledgers[erased].rounds_eligible == 0  # nothing stored about them
