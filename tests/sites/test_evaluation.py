"""Federated evaluation from sums: equal to the pooled metrics (AUC up to the bin width)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from aivo.sites.evaluation import MetricSums, auc_from_histograms


def test_sums_over_sites_give_the_pooled_metrics():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, 3000)
    y = (rng.random(3000) < p).astype(float)
    parts = np.array_split(np.arange(3000), 3)
    total = MetricSums.empty()
    for part in parts:
        total = total + MetricSums.of(y[part], p[part])
    m = total.metrics()
    assert m["n"] == 3000
    assert m["log_loss"] == pytest.approx(log_loss(y, p), rel=1e-12)
    assert m["brier"] == pytest.approx(brier_score_loss(y, p), rel=1e-12)
    assert m["accuracy"] == pytest.approx(np.mean((p >= 0.5) == (y == 1)))
    assert abs(m["auc"] - roc_auc_score(y, p)) < 2e-4


def test_auc_of_ties_and_one_class():
    assert auc_from_histograms(np.array([0, 1]), np.array([1, 0])) == 1.0
    assert auc_from_histograms(np.array([1, 0]), np.array([1, 0])) == 0.5
    assert auc_from_histograms(np.array([1, 0]), np.array([0, 0])) is None


def test_round_trip_and_bad_arrays():
    sums = MetricSums.of(np.array([1, 0, 1]), np.array([0.9, 0.2, 0.4]), bins=8)
    back = MetricSums.from_arrays(sums.to_arrays(), bins=8)
    assert back.metrics() == sums.metrics()
    arrays = sums.to_arrays()
    with pytest.raises(ValueError, match="wrong shape"):
        MetricSums.from_arrays(arrays, bins=16)
    arrays[0] = arrays[0].copy()
    arrays[0][0] = 99
    with pytest.raises(ValueError, match="do not match"):
        MetricSums.from_arrays(arrays, bins=8)
    arrays[0][0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MetricSums.from_arrays(arrays, bins=8)
