"""Local training: one learner's data only, the fallback rule, batched == one by one, DP-SGD."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aivo.brain.batching import encode_log, iterate_batches
from aivo.brain.train import brain_loss, forward_batch
from aivo.data.schema import InteractionLog
from aivo.errors import ConfigError, DataError
from aivo.personalization.batched import LearnerChunks, UnrolledRNN, shared_updates
from aivo.personalization.functional import masked_brain_loss
from aivo.personalization.local import (
    LocalTrainingConfig,
    RecordLevelDP,
    holdout_size,
    improvement_z,
    train_local,
)
from aivo.personalization.parts import partition_parameters
from aivo.privacy.accountants import epsilon_for


@pytest.fixture
def partition(small_world):
    return partition_parameters(small_world.brain.model, frozen_prefixes="encoder")


def one_learner(small_world, index=0) -> InteractionLog:
    ids = small_world.log.frame["learner_id"].unique()
    return small_world.log.select_learners([ids[index]])


def with_answers(log: InteractionLog, answers) -> InteractionLog:
    frame = log.frame.copy()
    frame["correct"] = np.asarray(answers, dtype=frame["correct"].dtype)
    return InteractionLog(frame, log.source)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_unrolled_rnn_matches_the_fused_kernel(kind):
    torch.manual_seed(0)
    rnn = (torch.nn.GRU if kind == "gru" else torch.nn.LSTM)(5, 7, num_layers=2, batch_first=True)
    x = torch.randn(3, 11, 5)
    torch.testing.assert_close(UnrolledRNN(rnn)(x)[0], rnn(x)[0], rtol=1e-5, atol=1e-6)


def test_masked_loss_equals_the_main_brain_loss(small_world):
    brain = small_world.brain
    encoded = encode_log(small_world.log, vocab=brain.vocab, tables=brain.tables, config=brain.config)
    batch = next(iter(iterate_batches(encoded, batch_size=8)))
    with torch.no_grad():
        out = forward_batch(brain.model, batch)
        torch.testing.assert_close(masked_brain_loss(out, batch, brain.config), brain_loss(out, batch, brain.config))


def test_refuses_several_learners_and_too_little_data(small_world, partition):
    config = LocalTrainingConfig()
    with pytest.raises(DataError, match="exactly one learner"):
        train_local(brain=small_world.brain, history=small_world.log, partition=partition, config=config)
    short = InteractionLog(one_learner(small_world).frame.iloc[:3].reset_index(drop=True))
    with pytest.raises(DataError, match="at least 5"):
        train_local(brain=small_world.brain, history=short, partition=partition, config=config)


def test_update_covers_exactly_the_aggregated_parameters(small_world, partition):
    result = train_local(brain=small_world.brain, history=one_learner(small_world), partition=partition,
                         config=LocalTrainingConfig(epochs=2))
    assert sorted(result.update) == sorted(partition.aggregated)
    assert all(v.dtype == torch.float32 for v in result.update.values())
    assert sorted(result.personal) == sorted(partition.personal)
    assert any(float(v.abs().max()) > 0 for v in result.update.values())
    n = one_learner(small_world).num_interactions
    assert result.num_holdout == holdout_size(n, 0.2) and result.num_train == n - result.num_holdout


def test_training_ignores_the_held_out_interactions(small_world, partition):
    log = one_learner(small_world)
    n_hold = holdout_size(log.num_interactions, 0.2)
    flipped = with_answers(log, np.r_[log.frame["correct"].to_numpy()[:-n_hold], 1 - log.frame["correct"].to_numpy()[-n_hold:]])
    validated = LocalTrainingConfig(refit_personal=False)
    a = train_local(brain=small_world.brain, history=log, partition=partition, config=validated)
    b = train_local(brain=small_world.brain, history=flipped, partition=partition, config=validated)
    for name in a.update:
        torch.testing.assert_close(a.update[name], b.update[name])
    for name in a.personal:
        torch.testing.assert_close(a.personal[name], b.personal[name])
    # The held-out figures describe that validated fit also when the clone is refitted afterwards.
    refit_a = train_local(brain=small_world.brain, history=log, partition=partition, config=LocalTrainingConfig())
    refit_b = train_local(brain=small_world.brain, history=flipped, partition=partition, config=LocalTrainingConfig())
    assert refit_a.holdout_personal == a.holdout_personal and refit_b.holdout_personal == b.holdout_personal
    assert refit_a.fallback == a.fallback and refit_a.improvement_z == a.improvement_z
    for name in a.update:
        torch.testing.assert_close(refit_a.update[name], refit_b.update[name])


def test_the_refit_learns_from_the_held_out_interactions(small_world, partition):
    """After validation the personal parameters are fitted again on every interaction: a learner who
    got every held-out answer right ends with a higher personal bias than one who got them all wrong."""
    log = one_learner(small_world)
    n_hold = holdout_size(log.num_interactions, 0.2)
    answers = log.frame["correct"].to_numpy()[:-n_hold]
    right = train_local(brain=small_world.brain, history=with_answers(log, np.r_[answers, np.ones(n_hold)]),
                        partition=partition, config=LocalTrainingConfig())
    wrong = train_local(brain=small_world.brain, history=with_answers(log, np.r_[answers, np.zeros(n_hold)]),
                        partition=partition, config=LocalTrainingConfig())
    assert float(right.personal["personal.bias"]) > float(wrong.personal["personal.bias"]) + 0.05
    no_refit = train_local(brain=small_world.brain, history=with_answers(log, np.r_[answers, np.ones(n_hold)]),
                           partition=partition, config=LocalTrainingConfig(refit_personal=False))
    assert float(right.personal["personal.bias"]) > float(no_refit.personal["personal.bias"])


def test_fallback_when_the_personal_model_validates_worse(small_world, partition):
    log = one_learner(small_world)
    n, n_hold = log.num_interactions, holdout_size(log.num_interactions, 0.2)
    # right on everything it trains on, wrong on everything held out: personalizing must hurt
    contrarian = with_answers(log, np.r_[np.ones(n - n_hold), np.zeros(n_hold)])
    result = train_local(brain=small_world.brain, history=contrarian, partition=partition,
                         config=LocalTrainingConfig(personal_l2=0.1))
    assert result.fallback and "log-loss" in result.fallback_reason
    assert result.holdout_personal["log_loss"] > result.holdout_main["log_loss"]
    consistent = with_answers(log, np.ones(n))  # always right: personalizing must help
    result = train_local(brain=small_world.brain, history=consistent, partition=partition,
                         config=LocalTrainingConfig(personal_l2=0.1, fallback_confidence=0.0))
    assert not result.fallback and result.improvement > 0
    # a stricter rule asks for the improvement in standard errors: above it the clone is refused
    assert result.improvement_z is not None and result.improvement_z > 0
    strict = train_local(brain=small_world.brain, history=consistent, partition=partition,
                         config=LocalTrainingConfig(personal_l2=0.1, fallback_confidence=result.improvement_z + 0.5))
    assert strict.fallback and "standard errors" in strict.fallback_reason
    lenient = train_local(brain=small_world.brain, history=consistent, partition=partition,
                          config=LocalTrainingConfig(personal_l2=0.1, fallback_confidence=result.improvement_z / 2))
    assert not lenient.fallback


def test_improvement_z_by_hand():
    y = np.array([1.0, 1.0, 0.0, 1.0])
    main, personal = np.array([0.5, 0.5, 0.5, 0.5]), np.array([0.8, 0.6, 0.4, 0.3])
    loss_main = -(y * np.log(main) + (1 - y) * np.log(1 - main))
    loss_personal = -(y * np.log(personal) + (1 - y) * np.log(1 - personal))
    diff = loss_main - loss_personal
    expected = diff.mean() / (diff.std(ddof=1) / 2)
    assert improvement_z(y, main, personal) == pytest.approx(expected)
    assert improvement_z(y, main, main) == 0.0
    assert improvement_z(np.ones(3), np.full(3, 0.5), np.full(3, 0.9)) == np.inf  # equal gains: no spread


def test_fallback_confidence_is_validated():
    with pytest.raises(ConfigError, match="fallback_confidence"):
        LocalTrainingConfig(fallback_confidence=-1)


@pytest.mark.parametrize("method", ["staged", "vmap"])
def test_batched_updates_equal_one_by_one(small_world, partition, method):
    brain = small_world.brain
    config = LocalTrainingConfig(epochs=3, learning_rate=0.2, proximal_mu=0.05)
    one_by_one, chunks = [], []
    for index in range(4):
        log = one_learner(small_world, index)
        one_by_one.append(train_local(brain=brain, history=log, partition=partition, config=config).update)
        n_train = log.num_interactions - holdout_size(log.num_interactions, config.holdout_fraction)
        train = InteractionLog(log.frame.iloc[:n_train].reset_index(drop=True))
        chunks.append(LearnerChunks(str(index), encode_log(train, vocab=brain.vocab, tables=brain.tables,
                                                           config=brain.config)))
    batched = shared_updates(brain=brain, learners=chunks, partition=partition, epochs=3, learning_rate=0.2,
                             proximal_mu=0.05, method=method)
    for index, expected in enumerate(one_by_one):
        for name, value in expected.items():
            torch.testing.assert_close(batched[name][index], value, rtol=1e-4, atol=1e-6)


def test_staged_forward_equals_the_model(small_world):
    from aivo.personalization.batched import _stack_batches, staged_forward

    brain = small_world.brain
    learners = []
    for index in range(3):
        log = one_learner(small_world, index)
        learners.append(LearnerChunks(str(index), encode_log(log, vocab=brain.vocab, tables=brain.tables,
                                                             config=brain.config)))
    width = max(int(lc.encoded.chunk_length.max()) for lc in learners)
    data = _stack_batches(learners, width, 1)
    params = {n: p.detach().unsqueeze(0).expand(3, *p.shape) for n, p in brain.model.named_parameters()
              if not n.startswith("encoder.")}
    with torch.no_grad():
        staged = staged_forward(brain.model, params, data)
        for index in range(3):
            direct = brain.model(item=data["item"][index], skills=data["skills"][index],
                                 item_type=data["item_type"][index], correct=data["correct"][index],
                                 features=data["features"][index])
            valid = data["valid"][index]
            torch.testing.assert_close(staged.correct_logit[index][valid], direct.correct_logit[valid])
            torch.testing.assert_close(staged.content_logits[index][valid], direct.content_logits[valid])


def test_dp_sgd_reports_the_accountants_epsilon(small_world, partition):
    dp = RecordLevelDP(noise_multiplier=1.0, clip_norm=0.5, window=5, expected_batch_size=2)
    result = train_local(brain=small_world.brain, history=one_learner(small_world), partition=partition,
                         config=LocalTrainingConfig(epochs=2, dp=dp))
    sigma, q, steps = result.dp_history[0]
    assert sigma == 1.0 and 0 < q < 1 and steps >= 2
    assert result.record_epsilon == pytest.approx(epsilon_for(history=result.dp_history, delta=1e-5))
    plain = train_local(brain=small_world.brain, history=one_learner(small_world), partition=partition,
                        config=LocalTrainingConfig(epochs=2))
    assert plain.record_epsilon is None
    assert any(not torch.allclose(result.update[n], plain.update[n]) for n in plain.update)


def test_all_shared_frozen_gives_no_update(small_world):
    partition = partition_parameters(small_world.brain.model, frozen_prefixes="embed,encoder,head")
    result = train_local(brain=small_world.brain, history=one_learner(small_world), partition=partition,
                         config=LocalTrainingConfig())
    assert result.update == {} and result.personal


def test_refit_setting_reaches_the_local_config(monkeypatch):
    from aivo.config import Settings
    from aivo.services.local_training import local_config_from_settings

    assert local_config_from_settings(Settings()).refit_personal is True
    monkeypatch.setenv("AIVO_PERSONAL_REFIT", "false")
    assert local_config_from_settings(Settings()).refit_personal is False
    assert local_config_from_settings(Settings(), refit_personal=True).refit_personal is True  # CLI --refit wins
    assert local_config_from_settings(Settings(), refit_personal=None).refit_personal is False  # no flag: setting
