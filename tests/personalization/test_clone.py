"""Clones in the registry (SQLite and PostgreSQL): storage, comparison, training, moving, serving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aivo.brain.predict import predict
from aivo.errors import ConfigError, ConflictError, NotFoundError
from aivo.federated.updates import UPDATE_KIND
from aivo.services.clones import clone_learner, compare_clone, provision_clones
from aivo.personalization.overlay import PERSONAL_KIND
from aivo.personalization.parts import partition_parameters
from aivo.services.local_training import train_learner
from aivo.personalization.serving import brain_for_learner
from aivo.registry import import_interactions, learner_model_history, load_interactions
from aivo.brain.versions import register_brain



def test_partition_checks_its_prefixes(small_world):
    model = small_world.brain.model
    p = partition_parameters(model, frozen_prefixes="encoder, head.correct")
    assert all(n.startswith(("encoder.", "head.correct.")) for n in p.frozen)
    assert not any(n.startswith("encoder.") for n in p.aggregated) and p.personal
    with pytest.raises(ConfigError, match="matches no"):
        partition_parameters(model, frozen_prefixes="decoder")
    with pytest.raises(ConfigError, match="personal"):
        partition_parameters(model, frozen_prefixes="personal")


def test_a_clone_stores_only_personal_parameters(world, clock):
    first = clone_learner(registry=world.registry, settings=world.settings, learner_id=world.learners[0], clock=clock)
    second = clone_learner(registry=world.registry, settings=world.settings, learner_id=world.learners[1], clock=clock)
    tensors, metadata = world.registry.store.load_tensors(first.artifact.sha256)
    assert metadata["kind"] == PERSONAL_KIND and metadata["main_version"] == world.version
    assert tensors and all(name.startswith("personal.") for name in tensors)
    assert first.artifact.sha256 == second.artifact.sha256  # fresh clones share one artifact
    assert first.model.status == "pending" and first.model.source_version == world.version
    assert first.parameters["stored_in_clone"] == sum(t.numel() for t in tensors.values())
    assert first.parameters["trainable"] == first.parameters["personal"] + first.parameters["aggregated"]
    with pytest.raises(ConflictError, match="--reset"):
        clone_learner(registry=world.registry, settings=world.settings, learner_id=world.learners[0], clock=clock)
    again = clone_learner(registry=world.registry, settings=world.settings, learner_id=world.learners[0],
                          reset=True, clock=clock)
    assert not again.created and again.model.status == "pending"


def test_provisioning_in_batches(world, clock):
    result = provision_clones(registry=world.registry, settings=world.settings, learner_ids=world.learners,
                              batch_size=7, clock=clock)
    assert result.created == len(world.learners) and result.existing == 0
    again = provision_clones(registry=world.registry, settings=world.settings, learner_ids=world.learners[:3],
                             clock=clock)
    assert again.created == 0 and again.existing == 3


def test_compare_clone_with_its_main_model(world, clock):
    learner = world.learners[0]
    clone_learner(registry=world.registry, settings=world.settings, learner_id=learner, clock=clock)
    train_learner(registry=world.registry, settings=world.settings, learner_id=learner, clock=clock)
    comparison = compare_clone(registry=world.registry, settings=world.settings, learner_id=learner)
    roles = {layer.role for layer in comparison.layers}
    assert roles == {"personal", "aggregated", "frozen"}
    for layer in comparison.layers:
        if layer.role != "personal":
            assert layer.l2_difference == 0.0  # the clone holds no shared weights of its own
    assert any(layer.l2_difference > 0 for layer in comparison.layers if layer.role == "personal")
    p = comparison.parameters
    assert p["trainable"] + p["frozen"] == sum(layer.num_parameters for layer in comparison.layers)
    assert comparison.stored_bytes and comparison.stored_bytes < 20_000


def test_local_training_uses_only_that_learners_data(world, small_world, clock):
    learner, other = world.learners[0], world.learners[1]
    clone_learner(registry=world.registry, settings=world.settings, learner_id=learner, clock=clock)
    first = train_learner(registry=world.registry, settings=world.settings, learner_id=learner, clock=clock)
    # Change another learner's data completely, then retrain from scratch: same result, bit for bit.
    with world.registry.session(read_only=True) as session:
        theirs = load_interactions(session=session, learner_ids=[other]).frame.copy()
    theirs["order"] = theirs["order"] + 10_000
    theirs["correct"] = 1 - theirs["correct"]
    from aivo.data.schema import make_log

    with world.registry.session() as session:  # ids are pseudonyms already: keep them
        result = import_interactions(session=session, log=make_log(theirs.drop(columns=["extra"], errors="ignore")),
                                     pseudonymize=lambda learner_id: learner_id, clock=clock)
    assert result.rows_inserted == len(theirs)
    clone_learner(registry=world.registry, settings=world.settings, learner_id=learner, reset=True, clock=clock)
    second = train_learner(registry=world.registry, settings=world.settings, learner_id=learner, clock=clock)
    assert second.session.artifact_sha256 == first.session.artifact_sha256
    assert second.session.update_artifact_sha256 == first.session.update_artifact_sha256


def test_training_records_the_session_update_and_status(world, clock):
    learner = world.learners[2]
    with pytest.raises(NotFoundError, match="aivo clone"):
        train_learner(registry=world.registry, settings=world.settings, learner_id=learner, clock=clock)
    clone_learner(registry=world.registry, settings=world.settings, learner_id=learner, clock=clock)
    report = train_learner(registry=world.registry, settings=world.settings, learner_id=learner, clock=clock)
    assert report.status in ("active", "fallback") and report.model.status == report.status
    assert report.session.samples == report.metrics["num_train"] and report.session.main_version == world.version
    tensors, metadata = world.registry.store.load_tensors(report.session.update_artifact_sha256)
    assert metadata["kind"] == UPDATE_KIND and metadata["main_version"] == world.version
    assert metadata["num_examples"] == report.metrics["num_train"]
    assert report.model.artifact_sha256 == report.session.artifact_sha256
    assert report.model.metrics["fallback"] == (report.status == "fallback")


def test_a_clone_moves_to_a_newly_promoted_version_on_its_next_training(world, small_world, clock):
    learner = world.learners[3]
    clone_learner(registry=world.registry, settings=world.settings, learner_id=learner, clock=clock)
    first = train_learner(registry=world.registry, settings=world.settings, learner_id=learner, clock=clock)
    newer = register_brain(registry=world.registry, brain=small_world.brain, training_metrics={}, data_hash=None,
                           parent_version=world.version, promote=True, actor="tests", reason="v2",
                           version="aivo-main-v2", clock=clock)
    clock.advance(hours=1)
    second = train_learner(registry=world.registry, settings=world.settings, learner_id=learner, clock=clock)
    assert second.moved_from == world.version and second.model.source_version == newer.version
    with world.registry.session(read_only=True) as session:
        history = learner_model_history(session=session, learner_id=learner)
    assert [s.main_version for s in history.sessions] == [world.version, newer.version]
    assert first.session.id != second.session.id


def test_serving_uses_the_clone_only_when_it_is_active(world, small_world, clock):
    learner = world.learners[4]
    served = brain_for_learner(registry=world.registry, learner_id=learner)
    assert served.source == "main" and served.status is None
    clone_learner(registry=world.registry, settings=world.settings, learner_id=learner, clock=clock)
    assert brain_for_learner(registry=world.registry, learner_id=learner).source == "main"  # pending
    report = train_learner(registry=world.registry, settings=world.settings.model_copy(update={"personal_l2": 0.1}),
                           learner_id=learner, clock=clock)
    served = brain_for_learner(registry=world.registry, learner_id=learner)
    with world.registry.session(read_only=True) as session:
        history = load_interactions(session=session, learner_ids=[learner])
    main_prob = predict(brain=small_world.brain, log=history)
    if report.status == "active":
        assert served.source == "clone"
        assert not np.allclose(predict(brain=served.brain, log=history), main_prob, equal_nan=True)
        assert float(small_world.brain.model.personal.bias.detach().abs().sum()) == 0.0  # main untouched
    else:
        assert served.source == "main"
    from aivo.registry import update_learner_model

    with world.registry.session() as session:
        update_learner_model(session=session, learner_id=learner, status="fallback", clock=clock)
    fallback = brain_for_learner(registry=world.registry, learner_id=learner)
    assert fallback.source == "main" and fallback.status == "fallback"
    np.testing.assert_array_equal(predict(brain=fallback.brain, log=history), main_prob)
