"""Causal hand-crafted history features ("Best-LR / DAS3H style"), vectorized.

For every interaction t of a chunk, the features describe what happened *before* t in the same
chunk (never t's own answer): prior attempts/corrects/wrongs on the same item and on the same
(first) skill, the last outcome and the time since then on each, the learner's smoothed running
correct rate, the chunk position and the previous answer. They are known before the learner
answers, so they are legitimate inputs for predicting t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURE_NAMES = (
    "item_log_attempts", "item_log_corrects", "item_log_wrongs", "item_last_outcome", "item_log_gap",
    "skill_log_attempts", "skill_log_corrects", "skill_log_wrongs", "skill_last_outcome", "skill_log_gap",
    "running_correct_rate", "log_position", "previous_outcome",
)
NUM_FEATURES = len(FEATURE_NAMES)


def _per_key(chunk: np.ndarray, key: np.ndarray, correct: np.ndarray, position: np.ndarray) -> np.ndarray:
    """(N, 5) features of the prior history of (chunk, key) at each row. Rows must be in order."""
    frame = pd.DataFrame({"chunk": chunk, "key": key, "correct": correct, "position": position})
    groups = frame.groupby(["chunk", "key"], sort=False)
    attempts = groups.cumcount().to_numpy(dtype=np.float64)
    corrects = groups["correct"].cumsum().to_numpy(dtype=np.float64) - correct
    last = groups["correct"].shift(1).to_numpy(dtype=np.float64)
    gap = position - groups["position"].shift(1).to_numpy(dtype=np.float64)
    seen = ~np.isnan(last)
    return np.stack([
        np.log1p(attempts),
        np.log1p(corrects),
        np.log1p(attempts - corrects),
        np.where(seen, 2.0 * np.nan_to_num(last) - 1.0, 0.0),  # +1 correct, -1 wrong, 0 never
        np.where(seen, np.log1p(np.nan_to_num(gap)), 0.0),
    ], axis=1)


def history_features(*, chunk: np.ndarray, position: np.ndarray, item: np.ndarray, skill: np.ndarray,
                     correct: np.ndarray, global_correct_rate: float, prior_count: float) -> np.ndarray:
    """(N,) arrays in chunk/position order -> (N, NUM_FEATURES) float32 features."""
    correct = np.asarray(correct, dtype=np.float64)
    position = np.asarray(position, dtype=np.int64)
    chunk = np.asarray(chunk, dtype=np.int64)
    item_part = _per_key(chunk, item, correct, position)
    skill_part = _per_key(chunk, skill, correct, position)
    cum = pd.Series(correct).groupby(chunk, sort=False).cumsum().to_numpy() - correct
    running = (cum + prior_count * global_correct_rate) / (position + prior_count)
    previous = np.zeros_like(correct)
    has_prev = position > 0
    previous[has_prev] = 2.0 * correct[np.flatnonzero(has_prev) - 1] - 1.0
    out = np.column_stack([item_part, skill_part, running, np.log1p(position), previous])
    return out.astype(np.float32)


def candidate_features(*, history_item: np.ndarray, history_skill: np.ndarray, history_correct: np.ndarray,
                       candidate_item: np.ndarray, candidate_skill: np.ndarray, global_correct_rate: float,
                       prior_count: float) -> np.ndarray:
    """Features of K candidate next interactions after one history of length T.

    Equals `history_features` of the sequence (history + candidate) at its last row, for each
    candidate, without building K sequences. Returns (K, NUM_FEATURES) float32."""
    history_correct = np.asarray(history_correct, dtype=np.float64)
    length = len(history_correct)
    position = np.arange(length)

    def per_key(hist_key: np.ndarray, cand_key: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame({"key": hist_key, "correct": history_correct, "position": position})
        stats = frame.groupby("key").agg(attempts=("correct", "size"), corrects=("correct", "sum"),
                                         last=("correct", "last"), last_position=("position", "last"))
        found = stats.reindex(pd.Index(cand_key))
        seen = found["attempts"].notna().to_numpy()
        attempts = np.nan_to_num(found["attempts"].to_numpy(dtype=np.float64))
        corrects = np.nan_to_num(found["corrects"].to_numpy(dtype=np.float64))
        last = np.nan_to_num(found["last"].to_numpy(dtype=np.float64))
        gap = length - np.nan_to_num(found["last_position"].to_numpy(dtype=np.float64))
        return np.stack([np.log1p(attempts), np.log1p(corrects), np.log1p(attempts - corrects),
                         np.where(seen, 2.0 * last - 1.0, 0.0), np.where(seen, np.log1p(gap), 0.0)], axis=1)

    k = len(candidate_item)
    running = (history_correct.sum() + prior_count * global_correct_rate) / (length + prior_count)
    previous = 2.0 * history_correct[-1] - 1.0 if length else 0.0
    shared = np.tile([running, np.log1p(length), previous], (k, 1))
    out = np.column_stack([per_key(np.asarray(history_item), np.asarray(candidate_item)),
                           per_key(np.asarray(history_skill), np.asarray(candidate_skill)), shared])
    return out.astype(np.float32)
