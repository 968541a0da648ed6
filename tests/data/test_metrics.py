import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import f1_score, log_loss, roc_auc_score

from aivo.data.metrics import binary_metrics, expected_calibration_error, subgroup_gap, subgroup_metrics


def sample(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    y = (rng.uniform(size=n) < p).astype(int)
    return y, p


def test_matches_scikit_learn():
    y, p = sample()
    m = binary_metrics(y, p)
    assert m.auc == pytest.approx(roc_auc_score(y, p))
    assert m.log_loss == pytest.approx(log_loss(y, p))
    assert m.f1 == pytest.approx(f1_score(y, p >= 0.5))
    assert m.n == 2000


def test_ece_against_hand_computed_and_sklearn_bins():
    # Two bins used: [0.1..0.2) holds 0.1, 0.1 with outcomes 0, 1 -> gap |0.1 - 0.5| = 0.4;
    # [0.9, 1.0] holds 0.9, 0.9 with outcomes 1, 1 -> gap 0.1. ECE = 0.5*0.4 + 0.5*0.1.
    assert expected_calibration_error([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9]) == pytest.approx(0.25)
    y, p = sample(seed=1)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    counts = np.histogram(p, bins=np.linspace(0, 1, 11))[0]
    expected = np.sum(np.abs(prob_true - prob_pred) * counts[counts > 0]) / len(y)
    assert expected_calibration_error(y, p) == pytest.approx(expected)


def test_perfectly_calibrated_model_has_small_ece():
    y, p = sample(n=200_000, seed=2)
    assert expected_calibration_error(y, p) < 0.01


def test_one_class_has_no_auc_and_subgroups_skip_small_groups():
    assert binary_metrics([1, 1, 1], [0.2, 0.7, 0.9]).auc is None
    y, p = sample()
    groups = np.where(np.arange(len(y)) < 1990, "big", "tiny")
    per = subgroup_metrics(y, p, groups, min_size=20)
    assert set(per) == {"big"}
    per = subgroup_metrics(y, p, np.arange(len(y)) % 2)
    assert set(per) == {"0", "1"} and subgroup_gap(per) >= 0


def test_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        binary_metrics([0, 1], [0.5])
