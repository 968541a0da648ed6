"""Causal hand-crafted history features ("Best-LR / DAS3H style"), vectorized.

For every interaction t of a chunk, the features describe what happened *before* t in the same
chunk (never t's own answer): prior attempts/corrects/wrongs on the same item and on the same
(first) skill, the last outcome and the time since then on each, the learner's smoothed running
correct rate, the chunk position and the previous answer; and difficulty-adjusted performance:
the running mean and recency-weighted means of (answer - expected answer), where "expected" is the
item's smoothed training correct rate (an online ability estimate in the spirit of Elo/IRT).
The target item's own expected rate (as log-odds) is a property of the question, not of its
answer. All are known before the learner answers t, so they are legitimate inputs for predicting t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.signal import lfilter

FEATURE_NAMES = (
    "item_log_attempts", "item_log_corrects", "item_log_wrongs", "item_last_outcome", "item_log_gap",
    "item_log_correct_streak", "item_log_wrong_streak", "item_residual_mean",
    "skill_log_attempts", "skill_log_corrects", "skill_log_wrongs", "skill_last_outcome", "skill_log_gap",
    "skill_log_correct_streak", "skill_log_wrong_streak", "skill_residual_mean",
    "type_log_attempts", "type_log_corrects", "type_log_wrongs", "type_last_outcome", "type_log_gap",
    "type_log_correct_streak", "type_log_wrong_streak", "type_residual_mean",
    "running_correct_rate", "log_position", "previous_outcome",
    "running_residual", "recent_outcome", "recent_residual", "ability_mean", "ability_sd",
    "target_expected_logodds",  # must stay last (candidate_features relies on it)
)
# Prior variance (logits^2) of a learner's ability relative to the population, for `ability_mean`.
ABILITY_PRIOR_VARIANCE = 1.0
# Recency weights of the exponentially weighted means (weight of the answer k steps back: decay**k).
RECENT_OUTCOME_DECAY = 0.7
RECENT_RESIDUAL_DECAY = 0.9
NUM_FEATURES = len(FEATURE_NAMES)
PER_KEY = 8  # columns per key (item, skill, item type) at the start of the feature vector
# Pseudo-attempts shrinking a key's mean residual (answer - expected) towards 0.
KEY_RESIDUAL_PRIOR = 3.0


def _inclusive_streaks(groups_key: list[np.ndarray], correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive right / wrong answers within each group, ending at (and including) each row."""
    out = []
    for hit in (correct, 1.0 - correct):
        frame = pd.DataFrame({f"k{i}": k for i, k in enumerate(groups_key)})
        frame["hit"] = hit
        keys = [f"k{i}" for i in range(len(groups_key))]
        # A miss starts a new run; the run's cumulative hits are the streak.
        frame["run"] = frame.assign(miss=1.0 - hit).groupby(keys, sort=False)["miss"].cumsum()
        out.append(frame.groupby([*keys, "run"], sort=False)["hit"].cumsum().to_numpy(dtype=np.float64))
    return out[0], out[1]


# Below this many rows (serving: one learner's history) a plain Python pass over the rows is far
# faster than pandas' groupby machinery; above it (training logs) pandas wins. Both give the same
# numbers (tests/brain/test_vocab_features.py).
_LOOP_MAX_ROWS = 4096


def _per_key(chunk: np.ndarray, key: np.ndarray, correct: np.ndarray, position: np.ndarray,
             residual: np.ndarray) -> np.ndarray:
    """(N, PER_KEY) features of the prior history of (chunk, key) at each row. Rows must be in order."""
    if len(chunk) <= _LOOP_MAX_ROWS:
        return _key_features(*_per_key_loop(chunk, key, correct, position, residual))
    frame = pd.DataFrame({"chunk": chunk, "key": key, "correct": correct, "position": position,
                          "residual": residual})
    groups = frame.groupby(["chunk", "key"], sort=False)
    attempts = groups.cumcount().to_numpy(dtype=np.float64)
    corrects = groups["correct"].cumsum().to_numpy(dtype=np.float64) - correct
    residuals = groups["residual"].cumsum().to_numpy(dtype=np.float64) - residual
    last = groups["correct"].shift(1).to_numpy(dtype=np.float64)
    gap = position - groups["position"].shift(1).to_numpy(dtype=np.float64)
    right_run, wrong_run = _inclusive_streaks([chunk, key], correct)
    frame["right_run"], frame["wrong_run"] = right_run, wrong_run
    groups = frame.groupby(["chunk", "key"], sort=False)  # again: now with the streak columns
    right_before = groups["right_run"].shift(1).to_numpy(dtype=np.float64)
    wrong_before = groups["wrong_run"].shift(1).to_numpy(dtype=np.float64)
    return _key_features(attempts, corrects, residuals, last, gap, right_before, wrong_before)


def _key_features(attempts, corrects, residuals, last, gap, right_before, wrong_before) -> np.ndarray:
    """The PER_KEY columns from the raw prior counts of each row (last/gap/streaks NaN: never seen)."""
    seen = ~np.isnan(last)
    return np.stack([
        np.log1p(attempts),
        np.log1p(corrects),
        np.log1p(attempts - corrects),
        np.where(seen, 2.0 * np.nan_to_num(last) - 1.0, 0.0),  # +1 correct, -1 wrong, 0 never
        np.where(seen, np.log1p(np.nan_to_num(gap)), 0.0),
        np.log1p(np.nan_to_num(right_before)),
        np.log1p(np.nan_to_num(wrong_before)),
        residuals / (attempts + KEY_RESIDUAL_PRIOR),
    ], axis=1)


class _KeyState:
    """What the rows of one (chunk, key) so far add up to (answers are 0/1)."""

    __slots__ = ("attempts", "corrects", "residual", "last", "last_position", "right_run", "wrong_run")

    def __init__(self) -> None:
        self.attempts, self.corrects, self.residual = 0.0, 0.0, 0.0
        self.last = self.last_position = self.right_run = self.wrong_run = np.nan

    def add(self, correct: float, position: float, residual: float) -> None:
        self.attempts += 1.0
        self.corrects += correct
        self.residual += residual
        self.last, self.last_position = correct, position
        # The streak ending at this row: a right answer extends the right run and ends the wrong one.
        self.right_run = (0.0 if np.isnan(self.right_run) else self.right_run) + 1.0 if correct == 1.0 else 0.0
        self.wrong_run = (0.0 if np.isnan(self.wrong_run) else self.wrong_run) + 1.0 if correct == 0.0 else 0.0

    def before(self, position: float) -> tuple[float, ...]:
        return (self.attempts, self.corrects, self.residual, self.last, position - self.last_position,
                self.right_run, self.wrong_run)


def _per_key_loop(chunk, key, correct, position, residual) -> tuple[np.ndarray, ...]:
    """The raw prior counts of `_key_features`, one Python pass over the rows."""
    states: dict = {}
    raw = np.empty((len(chunk), 7))
    for i, (c, k, answer, pos, res) in enumerate(zip(chunk.tolist(), np.asarray(key).tolist(),
                                                     np.asarray(correct, dtype=np.float64).tolist(),
                                                     np.asarray(position, dtype=np.float64).tolist(),
                                                     np.asarray(residual, dtype=np.float64).tolist())):
        state = states.get((c, k))
        if state is None:
            state = states[(c, k)] = _KeyState()
        raw[i] = state.before(pos)
        state.add(answer, pos, res)
    return tuple(raw.T)


def _key_states(key, correct, residual) -> dict:
    """key -> its `_KeyState` after one whole history (positions 0..T-1)."""
    states: dict = {}
    for pos, (k, answer, res) in enumerate(zip(np.asarray(key).tolist(),
                                               np.asarray(correct, dtype=np.float64).tolist(),
                                               np.asarray(residual, dtype=np.float64).tolist())):
        state = states.get(k)
        if state is None:
            state = states[k] = _KeyState()
        state.add(answer, float(pos), res)
    return states


def _chunk_cumsum(values: np.ndarray, chunk: np.ndarray) -> np.ndarray:
    """Cumulative sums that restart at each chunk (rows in chunk order)."""
    if len(chunk) > _LOOP_MAX_ROWS:
        return pd.Series(values).groupby(chunk, sort=False).cumsum().to_numpy()
    out = np.empty_like(values)
    bounds = [0, *(np.flatnonzero(np.diff(chunk)) + 1).tolist(), len(values)]
    for start, end in zip(bounds[:-1], bounds[1:]):
        out[start:end] = np.cumsum(values[start:end])
    return out


def _exclusive_ema(values: np.ndarray, chunk: np.ndarray, position: np.ndarray, decay: float) -> np.ndarray:
    """(N,) -> (N,): at t, sum over i < t (same chunk) of decay**(t-1-i) * values[i], times (1 - decay)."""
    num_chunks = int(chunk.max()) + 1 if len(chunk) else 0
    width = int(position.max()) + 1 if len(position) else 0
    padded = np.zeros((num_chunks, width + 1))
    padded[chunk, position + 1] = values  # shifted by one: exclusive of the step itself
    smoothed = lfilter([1.0 - decay], [1.0, -decay], padded, axis=1)
    return smoothed[chunk, position]


def _online_ability(chunk: np.ndarray, position: np.ndarray, correct: np.ndarray,
                    item_logodds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Online Bayesian (Laplace / extended-Kalman) estimate of each learner's ability offset.

    Model: P(right at i) = sigmoid(theta + d_i), d_i = item's expected log-odds, theta ~ N(0, v0).
    After each answer: v <- 1 / (1/v + p(1-p)), mean <- mean + v (answer - p), p = sigmoid(mean + d).
    Returns the (mean, sd) *before* each row (its own answer excluded), (N,) each."""
    num_chunks = int(chunk.max()) + 1 if len(chunk) else 0
    width = int(position.max()) + 1 if len(position) else 0
    answers = np.zeros((num_chunks, width))
    logodds = np.zeros((num_chunks, width))
    answers[chunk, position] = correct
    logodds[chunk, position] = item_logodds
    mean = np.zeros((num_chunks, width))
    var = np.full((num_chunks, width), ABILITY_PRIOR_VARIANCE)
    m, v = np.zeros(num_chunks), np.full(num_chunks, ABILITY_PRIOR_VARIANCE)
    for t in range(width - 1):  # padded steps after a chunk's end are never read
        p = 1.0 / (1.0 + np.exp(-(m + logodds[:, t])))
        v = 1.0 / (1.0 / v + p * (1.0 - p))
        m = m + v * (answers[:, t] - p)
        mean[:, t + 1], var[:, t + 1] = m, v
    return mean[chunk, position], np.sqrt(var[chunk, position])


def history_features(*, chunk: np.ndarray, position: np.ndarray, item: np.ndarray, skill: np.ndarray,
                     item_type: np.ndarray, correct: np.ndarray, expected: np.ndarray, global_correct_rate: float,
                     prior_count: float) -> np.ndarray:
    """(N,) arrays in chunk/position order -> (N, NUM_FEATURES) float32 features.

    `chunk` numbers the chunks 0..C-1 and `position` is the 0-based step within its chunk;
    `expected` is each row's item's expected correct rate (from training data)."""
    correct = np.asarray(correct, dtype=np.float64)
    expected = np.clip(np.asarray(expected, dtype=np.float64), 1e-3, 1 - 1e-3)
    position = np.asarray(position, dtype=np.int64)
    chunk = np.asarray(chunk, dtype=np.int64)
    residual = correct - expected
    item_part = _per_key(chunk, item, correct, position, residual)
    skill_part = _per_key(chunk, skill, correct, position, residual)
    type_part = _per_key(chunk, item_type, correct, position, residual)
    cum_correct = _chunk_cumsum(correct, chunk) - correct
    cum_residual = _chunk_cumsum(residual, chunk) - residual
    running = (cum_correct + prior_count * global_correct_rate) / (position + prior_count)
    previous = np.zeros_like(correct)
    has_prev = position > 0
    previous[has_prev] = 2.0 * correct[np.flatnonzero(has_prev) - 1] - 1.0
    out = np.column_stack([
        item_part, skill_part, type_part, running, np.log1p(position), previous,
        cum_residual / (position + prior_count),
        _exclusive_ema(2.0 * correct - 1.0, chunk, position, RECENT_OUTCOME_DECAY),
        _exclusive_ema(residual, chunk, position, RECENT_RESIDUAL_DECAY),
        *_online_ability(chunk, position, correct, np.log(expected / (1.0 - expected))),
        np.log(expected / (1.0 - expected)),
    ])
    return out.astype(np.float32)


def candidate_features(*, history_item: np.ndarray, history_skill: np.ndarray, history_type: np.ndarray,
                       history_correct: np.ndarray, history_expected: np.ndarray, candidate_item: np.ndarray,
                       candidate_skill: np.ndarray, candidate_type: np.ndarray, candidate_expected: np.ndarray,
                       global_correct_rate: float, prior_count: float) -> np.ndarray:
    """Features of K candidate next interactions after one history of length T.

    Equals `history_features` of the sequence (history + candidate) at its last row, for each
    candidate, without building K sequences. Returns (K, NUM_FEATURES) float32."""
    history_correct = np.asarray(history_correct, dtype=np.float64)
    history_expected = np.clip(np.asarray(history_expected, dtype=np.float64), 1e-3, 1 - 1e-3)
    length = len(history_correct)
    hist_keys = (np.asarray(history_item), np.asarray(history_skill), np.asarray(history_type))
    cand_keys = (np.asarray(candidate_item), np.asarray(candidate_skill), np.asarray(candidate_type))
    parts = []
    history_residual = history_correct - history_expected
    for hist_key, cand_key in zip(hist_keys, cand_keys):
        # A candidate's per-key columns are those of a probe row at position T with its key: the
        # counts of the history rows with that key (all zero for a key never seen).
        states = _key_states(hist_key, history_correct, history_residual)
        distinct = pd.unique(cand_key)
        empty = _KeyState().before(float(length))
        raw = np.array([states[k].before(float(length)) if k in states else empty for k in distinct.tolist()],
                       dtype=np.float64).reshape(len(distinct), 7)
        per_key = _key_features(*raw.T)
        parts.append(per_key[pd.Index(distinct).get_indexer(cand_key)])
    # The learner-level columns do not depend on the candidate: take them from the history with
    # one placeholder step appended (its own answer is never used).
    placeholder = history_features(
        chunk=np.zeros(length + 1, dtype=np.int64), position=np.arange(length + 1),
        item=np.append(hist_keys[0], -1), skill=np.append(hist_keys[1], -1), item_type=np.append(hist_keys[2], -1),
        correct=np.append(history_correct, 0.0), expected=np.append(history_expected, 0.5),
        global_correct_rate=global_correct_rate, prior_count=prior_count)[-1]
    k = len(candidate_item)
    shared = np.tile(placeholder[3 * PER_KEY:-1], (k, 1))
    expected = np.clip(np.asarray(candidate_expected, dtype=np.float64), 1e-3, 1 - 1e-3)
    out = np.column_stack([*parts, shared, np.log(expected / (1.0 - expected))])
    return out.astype(np.float32)
