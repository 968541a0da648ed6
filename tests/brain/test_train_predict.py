import numpy as np
import pandas as pd
import pytest
import torch

from aivo.brain.predict import evaluate, predict, predict_next
from aivo.brain.train import train_main_brain
from aivo.data.kt_format import read_kt_lines
from aivo.data.splits import split_learner_ids
from aivo.errors import DataError

from .helpers import random_log, tiny_config


def small_split(seed=0):
    log = random_log(num_learners=30, length=40, seed=seed)
    train_ids, val_ids, test_ids = split_learner_ids(log.frame["learner_id"].unique(), seed=seed)
    return log.select_learners(train_ids), log.select_learners(val_ids), log.select_learners(test_ids)


def test_same_seed_same_weights_and_other_seed_differs():
    train, val, _ = small_split()
    config = tiny_config(max_epochs=2)
    a = train_main_brain(train=train, validation=val, config=config, seed=3).model.state_dict()
    b = train_main_brain(train=train, validation=val, config=config, seed=3).model.state_dict()
    c = train_main_brain(train=train, validation=val, config=config, seed=4).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert all(torch.count_nonzero(a[k]) == 0 for k in a if k.startswith("personal."))


def test_predict_aligns_with_rows_and_skips_only_each_learners_first_attempt():
    train, val, test = small_split()
    result = train_main_brain(train=train, validation=val, config=tiny_config(max_seq_len=7), seed=0)
    prob = predict(brain=result.brain, log=test)
    frame = test.frame
    assert prob.shape == (len(frame),)
    position = frame.groupby("learner_id").cumcount().to_numpy()
    # histories are longer than max_seq_len: context windows (aivo.brain.context), no cold restarts
    assert position.max() > 7
    assert np.array_equal(np.isnan(prob), position == 0)
    assert ((prob[~np.isnan(prob)] > 0) & (prob[~np.isnan(prob)] < 1)).all()


def test_evaluate_reports_subgroups_and_oracle():
    train, val, test = small_split()
    brain = train_main_brain(train=train, validation=val, config=tiny_config(), seed=0).brain
    frame = test.frame.copy()
    frame["p_true"] = np.clip(0.5 + 0.4 * (2 * frame["correct"] - 1), 0, 1)  # a perfect oracle
    test = type(test)(frame)
    report = evaluate(brain=brain, log=test, group_by=["item_type"], min_group_size=5)
    assert report.num_scored == len(frame) - frame["learner_id"].nunique()
    assert report.metrics.n == report.num_scored
    assert set(report.subgroups["item_type"]) == {"mc", "word"}
    assert report.oracle is not None and report.oracle.auc == 1.0
    assert report.as_dict()["metrics"]["auc"] == report.metrics.auc
    with pytest.raises(DataError, match="accommodation"):
        evaluate(brain=brain, log=test, group_by=["accommodation"])


def test_predict_next_matches_the_sequence_prediction():
    train, val, test = small_split()
    brain = train_main_brain(train=train, validation=val, config=tiny_config(), seed=0).brain
    learner = test.frame[test.frame["learner_id"] == test.frame["learner_id"].iloc[0]].reset_index(drop=True)
    last = learner.iloc[-1]
    history = type(test)(learner.iloc[:-1].reset_index(drop=True))
    candidates = pd.DataFrame({"item_id": [last["item_id"], "q0", "never-seen"],
                               "skill_ids": [last["skill_ids"], "s0", "s0"],
                               "item_type": [last["item_type"], "mc", "mc"]})
    nxt = predict_next(brain=brain, history=history, candidates=candidates)
    full = predict(brain=brain, log=type(test)(learner))
    assert nxt.p_correct[0] == pytest.approx(full[-1], abs=1e-6)
    assert nxt.p_correct.shape == (3,) and np.isfinite(nxt.p_correct).all()
    assert nxt.difficulty_probs.shape == (10,) and nxt.difficulty_probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert len(nxt.skill_ids) == len(nxt.next_skill_probs)
    # a new learner (empty history) still gets predictions
    empty = type(test)(learner.iloc[:0])
    assert np.isfinite(predict_next(brain=brain, history=empty, candidates=candidates).p_correct).all()


def test_end_to_end_on_a_slice_of_synthetic5_learns(kt_data):
    train_log = read_kt_lines(kt_data / "synthetic5" / "train.csv")
    test_log = read_kt_lines(kt_data / "synthetic5" / "test.csv")
    learners = train_log.frame["learner_id"].unique()
    config = tiny_config(embed_dim=16, hidden_dim=32, head_hidden_dim=32, evidence_dim=8, max_epochs=4,
                         batch_size=32, learning_rate=1e-2)
    result = train_main_brain(train=train_log.select_learners(learners[:250]),
                              validation=train_log.select_learners(learners[250:330]), config=config, seed=0)
    assert 1 <= result.best_epoch <= len(result.history) <= 4
    report = evaluate(brain=result.brain, log=test_log.select_learners(test_log.frame["learner_id"].unique()[:200]))
    # item difficulty alone gives ~0.63 on this data; a model that reads the history does much better
    assert report.metrics.auc > 0.72


def test_training_refuses_unusable_logs():
    train, val, _ = small_split()
    single = type(val)(val.frame.groupby("learner_id").head(1).reset_index(drop=True))
    with pytest.raises(DataError, match="two or more attempts"):
        train_main_brain(train=train, validation=single, config=tiny_config(), seed=0)


def test_weight_average_ramps_its_decay_up_with_the_steps():
    from aivo.brain.train import ema_with_warmup

    update = ema_with_warmup(0.99)
    averaged, current = [torch.zeros(3)], [torch.ones(3)]
    update(averaged, current, torch.tensor(1))  # decay min(0.99, 2 / 11): mostly the new weights
    assert averaged[0] == pytest.approx(torch.full((3,), 1 - 2 / 11))
    averaged = [torch.zeros(3)]
    update(averaged, current, torch.tensor(100_000))  # ramped up: the configured decay
    assert averaged[0] == pytest.approx(torch.full((3,), 0.01))


def test_patience_counts_optimizer_steps_on_small_data():
    from aivo.brain.train import stopping_patience

    config = tiny_config(patience=3, patience_steps=100)
    assert stopping_patience(config, steps_per_epoch=9) == 12  # STATICS at batch 64: 100 steps = 12 epochs
    assert stopping_patience(config, steps_per_epoch=25) == 4
    assert stopping_patience(config, steps_per_epoch=34) == 3  # large data sets keep their 3 epochs
    assert stopping_patience(tiny_config(patience=3, patience_steps=0), steps_per_epoch=9) == 3
    with pytest.raises(ValueError, match="patience_steps must be a non-negative integer"):
        tiny_config(patience_steps=-1)

    # A model that does not move (learning rate 1e-12) never improves on validation: it stops after
    # `patience` epochs, unless the epochs so far are fewer steps than patience_steps.
    train, val, _ = small_split()
    frozen = dict(learning_rate=1e-12, weight_average_decay=0.0, patience=1, max_epochs=5)
    assert len(train_main_brain(train=train, validation=val, config=tiny_config(**frozen, patience_steps=0),
                                seed=0).history) == 2
    assert len(train_main_brain(train=train, validation=val, config=tiny_config(**frozen, patience_steps=1000),
                                seed=0).history) == 5
