"""Evaluation metrics for binary predictions: pure functions over NumPy arrays.

AUC, log-loss, accuracy, precision, recall and F1 come from scikit-learn; expected calibration
error (ECE) is the usual equal-width-bin estimator: sum over bins of
(bin size / n) * |mean predicted - observed rate|.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn import metrics as skm

EPS = 1e-7


@dataclass(frozen=True)
class BinaryMetrics:
    n: int
    positive_rate: float
    auc: float | None  # None when only one class is present
    accuracy: float
    log_loss: float
    f1: float
    precision: float
    recall: float
    ece: float

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, *, num_bins: int = 10) -> float:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if y_true.size == 0:
        raise ValueError("ECE of an empty set is undefined")
    # Bin i holds predictions in [i/B, (i+1)/B); the last bin is closed on the right.
    bins = np.minimum((y_prob * num_bins).astype(np.int64), num_bins - 1)
    counts = np.bincount(bins, minlength=num_bins)
    sum_prob = np.bincount(bins, weights=y_prob, minlength=num_bins)
    sum_true = np.bincount(bins, weights=y_true, minlength=num_bins)
    nonempty = counts > 0
    gaps = np.abs(sum_prob[nonempty] - sum_true[nonempty]) / counts[nonempty]
    return float(np.sum(gaps * counts[nonempty]) / y_true.size)


def binary_metrics(y_true, y_prob, *, threshold: float = 0.5, num_bins: int = 10) -> BinaryMetrics:
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    y_prob = np.clip(np.asarray(y_prob, dtype=np.float64).ravel(), 0.0, 1.0)
    if y_true.shape != y_prob.shape:
        raise ValueError(f"labels and predictions differ in length: {y_true.shape} vs {y_prob.shape}")
    if y_true.size == 0:
        raise ValueError("cannot compute metrics on zero predictions")
    y_pred = (y_prob >= threshold).astype(np.int64)
    both_classes = np.unique(y_true).size == 2
    return BinaryMetrics(
        n=int(y_true.size),
        positive_rate=float(y_true.mean()),
        auc=float(skm.roc_auc_score(y_true, y_prob)) if both_classes else None,
        accuracy=float(skm.accuracy_score(y_true, y_pred)),
        log_loss=float(skm.log_loss(y_true, np.clip(y_prob, EPS, 1 - EPS), labels=[0, 1])),
        f1=float(skm.f1_score(y_true, y_pred, zero_division=0)),
        precision=float(skm.precision_score(y_true, y_pred, zero_division=0)),
        recall=float(skm.recall_score(y_true, y_pred, zero_division=0)),
        ece=expected_calibration_error(y_true, y_prob, num_bins=num_bins),
    )


def subgroup_metrics(y_true, y_prob, groups, *, min_size: int = 20) -> dict[str, BinaryMetrics]:
    """Metrics per subgroup value (e.g. accommodation profile, grade). Groups smaller than
    `min_size` predictions are left out: their AUC would be noise."""
    y_true = np.asarray(y_true)
    y_prob = np.asarray(y_prob)
    labels = pd.Series(np.asarray(groups, dtype=object)).astype(str)
    out: dict[str, BinaryMetrics] = {}
    for value, index in sorted(labels.groupby(labels).indices.items()):
        if index.size >= min_size:
            out[value] = binary_metrics(y_true[index], y_prob[index])
    return out


def subgroup_gap(per_group: dict[str, BinaryMetrics], *, metric: str = "auc") -> float | None:
    """Largest minus smallest value of `metric` across subgroups (the fairness gap)."""
    values = [getattr(m, metric) for m in per_group.values() if getattr(m, metric) is not None]
    if len(values) < 2:
        return None
    return float(max(values) - min(values))
