"""Serving (`predict_next`) and evaluation (`predict`/`evaluate`) read the same context."""

import numpy as np
import pandas as pd
import pytest

from aivo.brain.context import context_start, context_stride, context_windows
from aivo.brain.predict import evaluate, predict, predict_next
from aivo.brain.train import train_main_brain
from aivo.data.schema import make_log

from .helpers import random_log, tiny_config
from .test_train_predict import small_split


def test_context_start_reads_everything_then_at_least_half_a_window():
    assert context_stride(200) == 100
    assert [context_start(t, 200) for t in (0, 1, 199, 200, 250, 299, 300, 399, 400, 1000)] == \
        [0, 0, 0, 100, 100, 100, 200, 200, 300, 900]
    positions = np.arange(5000)
    for length, stride in ((200, None), (200, 1), (200, 199), (2, None), (3, 1), (7, 3)):
        start = context_start(positions, length, stride)
        read = positions - start
        short = positions < length
        assert np.array_equal(start[short], np.zeros(short.sum()))
        stride_ = context_stride(length) if stride is None else stride
        assert read[~short].min() >= length - stride_ and read.max() <= length - 1
        assert (start % stride_ == 0).all() and (np.diff(start) >= 0).all()
    for bad in (0, 200, -1):
        with pytest.raises(ValueError, match="stride"):
            context_start(5, 200, bad)


@pytest.mark.parametrize("max_seq_len,stride", [(200, None), (10, None), (10, 1), (10, 9), (2, None)])
def test_context_windows_score_every_attempt_once_from_its_context(max_seq_len, stride):
    lengths = [1, 2, 9, 10, 11, 25, 199, 200, 201, 450, 1000]
    ids = np.repeat([f"L{i:02d}" for i in range(len(lengths))], lengths).astype(object)
    windows = context_windows(ids, max_seq_len, stride)
    learner_start = np.repeat(np.cumsum(lengths) - lengths, lengths)
    scored_rows = windows.rows[windows.scored]
    # every attempt but each learner's first, exactly once
    expected = np.flatnonzero(np.arange(len(ids)) != learner_start)
    assert np.array_equal(np.sort(scored_rows), expected)
    assert windows.lengths.max() <= max_seq_len and windows.lengths.sum() == len(windows.rows)
    # ...from the first row that context_start names
    window_of = np.repeat(np.arange(len(windows.starts)), windows.lengths)
    first_row = windows.rows[windows.starts][window_of]
    position = windows.rows - learner_start[windows.rows]
    want = learner_start[windows.rows] + context_start(position, max_seq_len, stride)
    assert np.array_equal(first_row[windows.scored], want[windows.scored])
    assert np.array_equal(windows.position, windows.rows - first_row)


def _long_learner(length: int) -> pd.DataFrame:
    """One learner with `length` attempts (random items, learnable answers)."""
    frame = random_log(num_learners=1, length=2 * length, seed=11).frame
    assert len(frame) >= length
    return frame.iloc[:length].reset_index(drop=True)


def test_serving_and_evaluation_agree_on_a_history_longer_than_a_window():
    train, val, _ = small_split()
    brain = train_main_brain(train=train, validation=val, config=tiny_config(max_epochs=1), seed=0).brain
    assert brain.config.max_seq_len == 200
    frame = _long_learner(450)
    full = predict(brain=brain, log=make_log(frame))
    assert np.isnan(full[0]) and np.isfinite(full[1:]).all()  # no cold restart at 200 or 400
    for t in (1, 57, 199, 200, 201, 250, 299, 300, 301, 399, 400, 449):
        history = make_log(frame.iloc[:t].reset_index(drop=True))
        candidate = frame.iloc[[t]][["item_id", "skill_ids", "item_type"]]
        served = predict_next(brain=brain, history=history, candidates=candidate).p_correct[0]
        assert served == pytest.approx(full[t], abs=1e-5), f"attempt {t}: served {served}, evaluated {full[t]}"
    # evaluation scores every attempt but the first, each once
    report = evaluate(brain=brain, log=make_log(frame))
    assert report.num_scored == len(frame) - 1


def test_short_histories_are_scored_as_the_benchmark_protocol_does():
    """Up to max_seq_len attempts the context is the protocol's chunk: scores are unchanged."""
    train, val, test = small_split()
    config = tiny_config(max_epochs=1, max_seq_len=16)
    brain = train_main_brain(train=train, validation=val, config=config, seed=0).brain
    from aivo.brain.batching import encode_log
    from aivo.brain.train import scored_probabilities

    chunks = scored_probabilities(brain.model, encode_log(test, vocab=brain.vocab, tables=brain.tables,
                                                          config=brain.config))
    context = predict(brain=brain, log=test)
    position = test.frame.groupby("learner_id", sort=False).cumcount().to_numpy()
    inside = position < 16
    np.testing.assert_allclose(context[inside], chunks[inside], atol=1e-6)
    # beyond the first window the protocol restarts cold; serving's context never does
    assert np.isnan(chunks[position == 16]).all() and np.isfinite(context[position == 16]).all()
