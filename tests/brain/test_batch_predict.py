"""Batched next-step predictions equal the one-learner path (`predict_next`)."""

import numpy as np
import pandas as pd
import pytest
import torch

from aivo.brain.batch_predict import BatchPredictor
from aivo.brain.predict import predict_next
from aivo.brain.train import train_main_brain
from aivo.data.schema import make_log

from .helpers import tiny_config
from .test_train_predict import small_split


def _catalog(log) -> pd.DataFrame:
    return log.frame.drop_duplicates("item_id")[["item_id", "skill_ids", "item_type"]].reset_index(drop=True)


@pytest.mark.parametrize("changes", [
    {},
    {"evidence_kind": "residual", "evidence_normalize": "mean", "evidence_decays": (1.0, 0.8)},
    {"encoder": "lstm", "num_layers": 2, "evidence_normalize": "sqrt"},
    {"use_history_features": False, "evidence_dim": 0},
    {"max_seq_len": 8},  # histories past the context limit: the state is rebuilt from the context
])
def test_batch_predictions_equal_predict_next_for_every_learner_and_step(changes):
    train, val, _ = small_split()
    brain = train_main_brain(train=train, validation=val, config=tiny_config(max_epochs=1, **changes), seed=0).brain
    with torch.no_grad():  # trained personal parameters stay zero: give them values so they are checked too
        for p in brain.model.personal.parameters():
            p.normal_(0.0, 0.1)
    catalog = _catalog(train)
    catalog = pd.concat([catalog, pd.DataFrame({"item_id": ["never-seen"], "skill_ids": ["s-new;s1"],
                                                "item_type": [None]})], ignore_index=True)
    num_learners, steps = 4, 14
    rng = np.random.default_rng(1)
    predictor = BatchPredictor(brain, catalog, num_learners=num_learners, chunk_size=3)
    candidates = np.arange(len(catalog))
    histories = [[] for _ in range(num_learners)]
    for step in range(steps):
        batch = predictor.predict(candidates)
        for i in range(num_learners):
            history = make_log(pd.DataFrame(histories[i])) if histories[i] else type(train)(train.frame.iloc[:0])
            one = predict_next(brain=brain, history=history, candidates=catalog).p_correct
            assert batch[i] == pytest.approx(one, abs=2e-5), f"learner {i}, step {step}"
        rows = rng.integers(0, len(catalog), num_learners)
        correct = rng.integers(0, 2, num_learners)
        predictor.append(rows, correct)
        for i in range(num_learners):
            item = catalog.iloc[rows[i]]
            histories[i].append({"learner_id": f"L{i}", "item_id": item["item_id"], "skill_ids": item["skill_ids"],
                                 "item_type": item["item_type"], "correct": int(correct[i]), "order": step})


def test_batch_predictor_refuses_mismatched_shapes():
    train, val, _ = small_split()
    brain = train_main_brain(train=train, validation=val, config=tiny_config(max_epochs=1), seed=0).brain
    predictor = BatchPredictor(brain, _catalog(train), num_learners=3)
    with pytest.raises(ValueError, match="3"):
        predictor.append(np.array([0, 1]), np.array([1, 0]))
    with pytest.raises(ValueError, match="learners"):
        predictor.predict(np.zeros((2, 4), dtype=np.int64))
