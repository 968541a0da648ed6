"""round_updates: many learners' updates for a federated round equal train_local's, one by one."""

from __future__ import annotations

import torch

from aivo.personalization.local import LocalTrainingConfig, shared_update_only, train_local
from aivo.personalization.parts import partition_parameters
from aivo.personalization.round_updates import round_updates
from tests.federated.fixtures import small_world  # noqa: F401


def test_batched_round_updates_equal_one_by_one_local_training(small_world):
    brain, log = small_world.brain, small_world.log
    partition = partition_parameters(brain.model, frozen_prefixes="encoder")
    config = LocalTrainingConfig(epochs=2, learning_rate=0.1, personal_steps=0)
    learners = list(dict.fromkeys(log.frame["learner_id"]))[:6]
    subset = log.select_learners(learners)
    got = {u.learner_id: u for u in round_updates(brain=brain, log=subset, partition=partition, config=config)}
    assert sorted(got) == sorted(learners)
    for learner in learners:
        history = subset.select_learners([learner])
        full = train_local(brain=brain, history=history, partition=partition, config=config)
        only, num_train, _ = shared_update_only(brain=brain, history=history, partition=partition, config=config)
        assert got[learner].num_train == full.num_train == num_train
        for name in partition.aggregated:
            torch.testing.assert_close(got[learner].tensors[name], full.update[name], rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(only[name], full.update[name], rtol=0, atol=0)


def test_learners_with_too_few_interactions_are_skipped(small_world):
    brain, log = small_world.brain, small_world.log
    partition = partition_parameters(brain.model, frozen_prefixes="encoder")
    learner = log.frame["learner_id"].iloc[0]
    short = log.select_learners([learner])
    short = type(short)(short.frame.iloc[:3].reset_index(drop=True), short.source)
    assert list(round_updates(brain=brain, log=short, partition=partition, config=LocalTrainingConfig())) == []
