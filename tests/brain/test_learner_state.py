"""One learner's serving state: answers appended equal the state built from the whole history
(bit for bit), and its predictions equal `predict_next` (float32 rounding)."""

import numpy as np
import pandas as pd
import pytest
import torch

from aivo.brain.learner_history import LearnerHistory
from aivo.brain.learner_state import EncodedRows, ServingModel
from aivo.brain.predict import predict_next
from aivo.brain.train import train_main_brain
from aivo.data.schema import make_log

from .helpers import tiny_config
from .test_train_predict import small_split


def _encode(brain, frame: pd.DataFrame, *, item_types: bool) -> EncodedRows:
    history = LearnerHistory.from_frame(frame)
    return EncodedRows.encode(brain, item_ids=history.item_id, skill_ids=history.skill_ids,
                              item_types=history.item_type if item_types else None, correct=history.correct)


@pytest.mark.parametrize("changes", [
    {},
    {"encoder": "lstm", "num_layers": 2, "evidence_normalize": "sqrt"},
    {"use_history_features": False, "evidence_dim": 0},
    {"max_seq_len": 8},  # the history outgrows the context: rebuilt from the new context start
])
def test_appended_state_equals_state_from_scratch_and_predict_next(changes):
    train, val, _ = small_split()
    brain = train_main_brain(train=train, validation=val, config=tiny_config(max_epochs=1, **changes), seed=0).brain
    with torch.no_grad():  # give the personal parameters values so that they are checked too
        for p in brain.model.personal.parameters():
            p.normal_(0.0, 0.1)
    catalog = train.frame.drop_duplicates("item_id")[["item_id", "skill_ids", "item_type"]].reset_index(drop=True)
    serving = ServingModel(brain, catalog)
    rng = np.random.default_rng(2)
    rows = []
    for step in range(13):
        item = catalog.iloc[int(rng.integers(len(catalog)))]
        item_type = None if step == 4 else item["item_type"]  # one answer without a type: '<none>'
        rows.append({"learner_id": "L", "item_id": "unseen-item" if step == 6 else item["item_id"],
                     "skill_ids": item["skill_ids"], "item_type": item_type, "correct": int(rng.integers(2)),
                     "order": step})
    frame = make_log(pd.DataFrame(rows)).frame
    state = serving.new_state(_encode(brain, frame.iloc[:3], item_types=True))
    candidates = np.arange(len(catalog))
    for end in range(4, len(frame) + 1):
        state.append(_encode(brain, frame.iloc[end - 1:end], item_types=True))
        whole = serving.new_state(_encode(brain, frame.iloc[:end], item_types=True))
        assert np.array_equal(state.predict(candidates), whole.predict(candidates)), end
        expected = predict_next(brain=brain, history=make_log(frame.iloc[:end]), candidates=catalog).p_correct
        assert state.predict(candidates) == pytest.approx(expected, abs=2e-5), end
