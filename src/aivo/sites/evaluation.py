"""Federated evaluation from metric sums.

Each site scores a model on its learners' held-out interactions and returns only sums: the
number of scored rows, the sums of per-row log-loss and squared error, the number of correct
predictions, and two histograms of the predicted probability (one for correct answers, one
for wrong ones). Summed across sites they give the log-loss, Brier score and accuracy exactly,
and the AUC up to the bin width (pairs within one bin count one half, as ties do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_BINS = 4096
_EPS = 1e-7  # probabilities are clipped as in aivo.personalization.local.holdout_metrics


@dataclass
class MetricSums:
    n: int
    log_loss_sum: float
    brier_sum: float
    num_correct_predictions: int
    positives: np.ndarray  # (B,) counts of correct answers per probability bin
    negatives: np.ndarray  # (B,) counts of wrong answers per probability bin

    @classmethod
    def empty(cls, bins: int = DEFAULT_BINS) -> "MetricSums":
        return cls(0, 0.0, 0.0, 0, np.zeros(bins, dtype=np.int64), np.zeros(bins, dtype=np.int64))

    @classmethod
    def of(cls, y_true: np.ndarray, y_prob: np.ndarray, *, bins: int = DEFAULT_BINS) -> "MetricSums":
        y = np.asarray(y_true, dtype=np.float64)
        p = np.clip(np.asarray(y_prob, dtype=np.float64), _EPS, 1 - _EPS)
        if y.shape != p.shape:
            raise ValueError(f"labels {y.shape} and probabilities {p.shape} differ in shape")
        index = np.minimum((p * bins).astype(np.int64), bins - 1)
        positives = np.bincount(index[y == 1], minlength=bins).astype(np.int64)
        negatives = np.bincount(index[y != 1], minlength=bins).astype(np.int64)
        log_loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        return cls(int(len(y)), float(log_loss.sum()), float(((p - y) ** 2).sum()),
                   int(((p >= 0.5) == (y == 1)).sum()), positives, negatives)

    def __add__(self, other: "MetricSums") -> "MetricSums":
        if self.positives.shape != other.positives.shape:
            raise ValueError("metric sums with different bin counts cannot be added")
        return MetricSums(self.n + other.n, self.log_loss_sum + other.log_loss_sum, self.brier_sum + other.brier_sum,
                          self.num_correct_predictions + other.num_correct_predictions,
                          self.positives + other.positives, self.negatives + other.negatives)

    def to_arrays(self) -> list[np.ndarray]:
        scalars = np.array([self.n, self.log_loss_sum, self.brier_sum, self.num_correct_predictions], dtype=np.float64)
        return [scalars, self.positives.astype(np.int64), self.negatives.astype(np.int64)]

    @classmethod
    def from_arrays(cls, arrays: list[np.ndarray], *, bins: int) -> "MetricSums":
        """Raises ValueError naming what does not fit."""
        if len(arrays) != 3:
            raise ValueError(f"expected 3 arrays of metric sums, got {len(arrays)}")
        scalars, positives, negatives = (np.asarray(a) for a in arrays)
        if scalars.shape != (4,) or positives.shape != (bins,) or negatives.shape != (bins,):
            raise ValueError("metric sums of the wrong shape")
        if not np.isfinite(scalars).all() or (positives < 0).any() or (negatives < 0).any():
            raise ValueError("metric sums contain NaN, Inf or negative counts")
        n, correct = int(scalars[0]), int(scalars[3])
        if n != positives.sum() + negatives.sum() or not 0 <= correct <= n or scalars[1] < 0 or scalars[2] < 0:
            raise ValueError("metric sums do not match their counts")
        return cls(n, float(scalars[1]), float(scalars[2]), correct, positives.astype(np.int64),
                   negatives.astype(np.int64))

    def metrics(self) -> dict:
        """n, log_loss, accuracy, brier, auc (None without both classes): the keys of
        `BinaryMetrics.as_dict` that the gate reads."""
        if self.n == 0:
            return {"n": 0, "log_loss": None, "accuracy": None, "brier": None, "auc": None}
        return {"n": self.n, "log_loss": self.log_loss_sum / self.n, "accuracy": self.num_correct_predictions / self.n,
                "brier": self.brier_sum / self.n, "auc": auc_from_histograms(self.positives, self.negatives)}


def auc_from_histograms(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """P(score of a random positive > that of a random negative), ties (same bin) counting 1/2."""
    num_pos, num_neg = float(positives.sum()), float(negatives.sum())
    if num_pos == 0 or num_neg == 0:
        return None
    below = np.cumsum(negatives) - negatives  # negatives in strictly lower bins
    wins = float((positives * (below + 0.5 * negatives)).sum())
    return wins / (num_pos * num_neg)
