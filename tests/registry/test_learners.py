"""Learners, learner models, training sessions, eligibility, federated updates, statistics."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aivo.errors import ConflictError, DataError, NotFoundError
from aivo.registry import (
    ensure_learner,
    get_eligible_for_aggregation,
    get_learner_model,
    get_statistics,
    learner_model_history,
    list_federated_updates,
    list_learner_models,
    list_learners,
    promote_main_version,
    record_federated_update,
    record_training_session,
    register_learner_model,
    update_learner_model,
)
from tests.registry.helpers import add_version, stored


@pytest.fixture
def with_version(registry, clock):
    with registry.session() as s:
        add_version(s, registry.store, "v1", clock=clock)
        promote_main_version(session=s, version="v1", actor="t", reason="setup", clock=clock)
    return "v1"


def _clone(registry, learner: str, clock, *, tenant: str = "default", kind: str = "brain", version: str = "v1"):
    with registry.session() as s:
        return register_learner_model(session=s, store=registry.store, learner_id=learner, source_version=version,
                                      artifact=stored(registry.store, "init-head"), kind=kind, tenant=tenant,
                                      metrics={"auc": 0.6}, performance=0.6, clock=clock)


def test_register_get_list_update(registry, clock, with_version):
    model = _clone(registry, "p-alex", clock, tenant="school-a")
    assert (model.learner_id, model.tenant, model.source_version, model.status) == ("p-alex", "school-a", "v1",
                                                                                     "active")
    _clone(registry, "p-sam", clock)
    _clone(registry, "p-sam", clock, kind="tutor")  # one model per (learner, kind)
    with pytest.raises(ConflictError), registry.session() as s:
        register_learner_model(session=s, store=registry.store, learner_id="p-sam", source_version="v1",
                               artifact=None)
    with pytest.raises(ConflictError, match="another tenant"), registry.session() as s:
        ensure_learner(session=s, learner_id="p-alex", tenant="school-b")
    with pytest.raises(ConflictError, match="another tenant"), registry.session() as s:
        register_learner_model(session=s, store=registry.store, learner_id="p-alex", source_version="v1",
                               artifact=None, kind="tutor", tenant="school-b")
    with pytest.raises(NotFoundError), registry.session() as s:  # nothing half-written either
        register_learner_model(session=s, store=registry.store, learner_id="p-new", source_version="v9",
                               artifact=None)
    with registry.session(read_only=True) as s:
        assert "p-new" not in {x.learner_id for x in list_learners(session=s)}
    with pytest.raises(NotFoundError), registry.session() as s:
        register_learner_model(session=s, store=registry.store, learner_id="p-x", source_version="v9",
                               artifact=None)
    with pytest.raises(DataError), registry.session() as s:
        register_learner_model(session=s, store=registry.store, learner_id="p-y", source_version="v1",
                               artifact=None, status="weird")
    with registry.session() as s:
        pending = register_learner_model(session=s, store=registry.store, learner_id="p-z", source_version="v1",
                                         artifact=None)
        assert pending.status == "pending" and pending.artifact_sha256 is None
        clock.advance(minutes=5)
        new_head = stored(registry.store, "trained-head")
        updated = update_learner_model(session=s, learner_id="p-z", store=registry.store, artifact=new_head,
                                       status="fallback", performance=0.55, clock=clock)
        assert (updated.status, updated.artifact_sha256, updated.performance) == ("fallback", new_head.sha256, 0.55)
        assert updated.updated_at == clock.now()
    with registry.session(read_only=True) as s:
        assert get_learner_model(session=s, learner_id="p-sam", kind="tutor").kind == "tutor"
        assert [m.learner_id for m in list_learner_models(session=s, tenant="school-a")] == ["p-alex"]
        assert len(list_learner_models(session=s, kind="brain")) == 3
        assert [m.learner_id for m in list_learner_models(session=s, status="fallback")] == ["p-z"]
        assert len(list_learners(session=s)) == 3
        with pytest.raises(NotFoundError):
            get_learner_model(session=s, learner_id="nobody")


def test_training_sessions_history_and_version_move(registry, clock, with_version):
    _clone(registry, "p-alex", clock)
    with registry.session() as s:
        add_version(s, registry.store, "v2", clock=clock, parent="v1")
        promote_main_version(session=s, version="v2", actor="t", reason="newer", clock=clock)
    for i in range(3):
        clock.advance(hours=1)
        with registry.session() as s:
            # The clone moves to v2 on its next training (with the new personal parameters).
            rec = record_training_session(
                session=s, store=registry.store, learner_id="p-alex", epochs=5, batch_size=32, samples=100 + i,
                final_loss=0.5 - i / 10, final_accuracy=0.7, dp={"noise_multiplier": 1.0, "clip_norm": 1.0},
                epsilon_spent=0.4, artifact=stored(registry.store, f"head-{i}"),
                update_artifact=stored(registry.store, f"delta-{i}"),
                main_version="v2" if i else None, clock=clock)
            assert rec.trained_at == clock.now()
    with registry.session(read_only=True) as s:
        history = learner_model_history(session=s, learner_id="p-alex")
    assert [x.samples for x in history.sessions] == [100, 101, 102]
    assert [x.main_version for x in history.sessions] == ["v1", "v2", "v2"]
    assert history.model.source_version == "v2" and history.model.last_trained_at == clock.now()
    assert history.model.artifact_sha256 == history.sessions[-1].artifact_sha256
    assert history.sessions[0].dp == {"noise_multiplier": 1.0, "clip_norm": 1.0}
    assert history.to_dict()["sessions"][0]["trained_at"].startswith("2026-03-02")
    with pytest.raises(DataError), registry.session() as s:
        record_training_session(session=s, store=registry.store, learner_id="p-alex", epochs=-1, batch_size=1,
                                samples=1)


def test_eligibility_window_and_contribution(registry, clock, with_version):
    start = clock.now()
    for name in ("a", "b", "c", "d", "e"):
        _clone(registry, name, clock)
    trained = {"a": 1, "b": 3, "c": 10, "d": 2}  # days ago; e never trained
    for name, days in sorted(trained.items(), key=lambda kv: -kv[1]):
        clock.set(start - timedelta(days=days))
        with registry.session() as s:
            record_training_session(session=s, store=registry.store, learner_id=name, epochs=1, batch_size=8,
                                    samples=10, update_artifact=stored(registry.store, f"u-{name}"), clock=clock)
    clock.set(start - timedelta(hours=12))
    with registry.session() as s:  # a second, newer session for "a": only the latest counts
        record_training_session(session=s, store=registry.store, learner_id="a", epochs=1, batch_size=8,
                                samples=20, clock=clock)
        update_learner_model(session=s, learner_id="d", status="inactive", clock=clock)
    clock.set(start)
    with registry.session(read_only=True) as s:
        eligible = get_eligible_for_aggregation(session=s, max_stale_days=7, clock=clock)
        assert [(e.learner_id, e.samples) for e in eligible] == [("b", 10), ("a", 20)]
        assert [e.learner_id for e in get_eligible_for_aggregation(session=s, max_stale_days=30, clock=clock)] \
            == ["c", "b", "a"]
        assert get_eligible_for_aggregation(session=s, max_stale_days=0, clock=clock) == []
        assert len(get_eligible_for_aggregation(session=s, max_stale_days=30, clock=clock, limit=1)) == 1
    with registry.session() as s:
        update = record_federated_update(
            session=s, version_before="v1", strategy="fedavg", status="applied",
            contributing_session_ids=[e.training_session_id for e in eligible],
            metrics_before={"auc": 0.70}, metrics_after={"auc": 0.71}, improvement=0.01,
            privacy={"epsilon": 2.1, "delta": 1e-5}, clock=clock)
    assert update.num_contributors == 2 and update.version_after is None
    with registry.session(read_only=True) as s:
        # "a"'s older session was superseded by the one that contributed: both are marked.
        assert [e.learner_id for e in get_eligible_for_aggregation(session=s, max_stale_days=30, clock=clock)] \
            == ["c"]
        history = learner_model_history(session=s, learner_id="a")
        assert all(x.contributed and x.federated_update_id == update.id for x in history.sessions)
        assert list_federated_updates(session=s)[0].privacy == {"epsilon": 2.1, "delta": 1e-5}
    with pytest.raises(DataError), registry.session() as s:
        record_federated_update(session=s, version_before="v1", strategy="x", status="maybe")


def test_statistics(registry, clock, with_version):
    with registry.session(read_only=True) as s:
        empty = get_statistics(session=s)
    assert empty.total_learner_models == 0 and empty.average_performance is None
    assert empty.active_main_version == "v1" and empty.total_main_versions == 1
    for name in ("a", "b", "c"):
        _clone(registry, name, clock)
    with registry.session() as s:
        update_learner_model(session=s, learner_id="a", performance=0.9, clock=clock)
        update_learner_model(session=s, learner_id="c", status="inactive", clock=clock)
        for name in ("a", "a", "b"):
            record_training_session(session=s, store=registry.store, learner_id=name, epochs=1, batch_size=1,
                                    samples=1, clock=clock)
    with registry.session() as s:
        sid = learner_model_history(session=s, learner_id="b").sessions[0].id
        record_federated_update(session=s, version_before="v1", strategy="median", status="rejected",
                                contributing_session_ids=[sid], clock=clock)
    with registry.session(read_only=True) as s:
        stats = get_statistics(session=s)
    assert stats.to_dict() == {
        "total_main_versions": 1, "active_main_version": "v1", "total_learners": 3,
        "total_learner_models": 3, "active_learner_models": 2, "total_federated_updates": 1,
        "total_training_sessions": 3, "pending_training_sessions": 2, "average_performance": pytest.approx(0.75)}
