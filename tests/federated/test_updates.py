"""Each kind of bad update is rejected with its reason and never aggregated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aivo.federated.aggregate import aggregate_updates
from aivo.federated.strategies import make_strategy
from aivo.federated.updates import LearnerUpdate, check_update

from .helpers import SPEC, update

GOOD = [1, 1, 1, 1, 1, 1, 1]


def altered(**tensors):
    base = update(GOOD, learner="bad")
    return LearnerUpdate(learner_id="bad", tensors={**base.tensors, **tensors}, main_version="v1", num_examples=5)


BAD = {
    "nan": (altered(b=torch.tensor([0.0, float("nan"), 0.0])), "NaN or Inf"),
    "inf": (altered(w=torch.full((2, 2), float("inf"))), "NaN or Inf"),
    "shape": (altered(b=torch.zeros(4)), "shape (4,), expected (3,)"),
    "dtype": (altered(b=torch.zeros(3, dtype=torch.float64)), "dtype float64"),
    "missing": (LearnerUpdate("bad", {"w": torch.zeros(2, 2)}, "v1", 5), "missing ['b']"),
    "extra": (altered(extra=torch.zeros(1)), "unexpected ['extra']"),
    "version": (update(GOOD, learner="bad", version="v0"), "main version 'v0'"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_each_bad_update_is_rejected_with_its_reason(kind):
    bad, reason = BAD[kind]
    assert reason in check_update(bad, SPEC)
    good = [update(np.full(7, 2.0), learner=f"g{i}", session_id=i) for i in range(3)]
    out = aggregate_updates(updates=[good[0], bad, good[1], good[2]], spec=SPEC, strategy=make_strategy("fedavg"),
                            clip_norm=100.0, server_learning_rate=1.0, generator=np.random.default_rng(0))
    assert [r.learner_id for r in out.rejected] == ["bad"] and reason in out.rejected[0].reason
    np.testing.assert_allclose(out.delta, np.full(7, 2.0))  # as if the bad update never existed
    assert out.accepted_sessions == [0, 1, 2]


def test_spec_round_trip():
    u = update(np.arange(7))
    np.testing.assert_array_equal(SPEC.flatten(SPEC.unflatten(SPEC.flatten(u.tensors))), np.arange(7))
    assert check_update(u, SPEC) is None


def test_huge_finite_values_are_clipped_not_mistaken_for_inf():
    """Aggregation detects NaN/Inf from the float64 norm: float32's largest values must still count as finite."""
    huge = altered(w=torch.full((2, 2), 3.0e38))
    out = aggregate_updates(updates=[huge], spec=SPEC, strategy=make_strategy("fedavg"), clip_norm=1.0,
                            server_learning_rate=1.0, generator=np.random.default_rng(0))
    assert out.rejected == [] and out.num_clipped == 1
    assert np.linalg.norm(out.delta) == pytest.approx(1.0)
