"""Strategies against hand-computed examples, streaming against in-memory, and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aivo.errors import ConfigError
from aivo.federated.aggregate import aggregate_updates
from aivo.federated.strategies import FedAvg, make_strategy, register_strategy, strategy_names

from .helpers import SPEC, update

A = [1, 2, 3, 4, 0, 0, 1]
B = [3, 2, 1, 0, 2, 0, 1]
C = [8, 2, -1, 4, 1, 0, 1]


def run(updates, strategy, *, clip=1e9, lr=1.0, seed=0):
    return aggregate_updates(updates=updates, spec=SPEC, strategy=strategy, clip_norm=clip,
                             server_learning_rate=lr, generator=np.random.default_rng(seed))


def test_fedavg_weights_by_examples():
    out = run([update(A, examples=1), update(B, examples=3)], make_strategy("fedavg"))
    # (1*A + 3*B) / 4, by hand
    np.testing.assert_allclose(out.delta, [2.5, 2, 1.5, 1, 1.5, 0, 1])


def test_fedprox_aggregates_like_fedavg_and_checks_mu():
    ups = [update(A, examples=1), update(B, examples=3)]
    np.testing.assert_allclose(run(ups, make_strategy("fedprox", proximal_mu=0.1)).delta,
                               run(ups, make_strategy("fedavg")).delta)
    with pytest.raises(ConfigError, match="mu > 0"):
        make_strategy("fedprox", proximal_mu=0.0)


def test_weighted_by_score_and_missing_score_is_rejected():
    out = run([update(A, score=0.75, learner="a"), update(B, score=0.25, learner="b"),
               update(C, score=None, learner="c")], make_strategy("weighted"))
    np.testing.assert_allclose(out.delta, 0.75 * np.array(A) + 0.25 * np.array(B))
    assert [r.learner_id for r in out.rejected] == ["c"] and "score" in out.rejected[0].reason


def test_median_and_trimmed_mean_by_hand():
    ups = [update(A), update(B), update(C)]
    np.testing.assert_allclose(run(ups, make_strategy("median")).delta, [3, 2, 1, 4, 1, 0, 1])
    rows = np.array([A, B, C, [0] * 7, [100] * 7], dtype=float)
    out = run([update(r) for r in rows], make_strategy("trimmed-mean", trim_fraction=0.2))
    expected = np.sort(rows, axis=0)[1:4].mean(axis=0)  # drop 1 of 5 on each side
    np.testing.assert_allclose(out.delta, expected)


def test_server_learning_rate_scales_the_step():
    np.testing.assert_allclose(run([update(A)], FedAvg(), lr=0.5).delta, 0.5 * np.array(A))


def test_registry_rejects_unknown_duplicate_and_foreign_options():
    assert set(strategy_names()) >= {"fedavg", "fedprox", "weighted", "median", "trimmed-mean"}
    with pytest.raises(ConfigError, match="unknown aggregation strategy"):
        make_strategy("krum")
    with pytest.raises(ValueError, match="already registered"):
        register_strategy(FedAvg)
    with pytest.raises(ConfigError, match="does not take"):
        make_strategy("fedavg", trim_fraction=0.1)
    with pytest.raises(ConfigError):
        make_strategy("trimmed-mean", trim_fraction=0.5)


def test_defaults_go_only_to_the_strategies_that_take_them():
    defaults = {"reservoir_size": 64, "proximal_mu": 0.1, "score_metric": "holdout_auc", "trim_fraction": None}
    assert make_strategy("fedavg", defaults=defaults) == FedAvg()
    assert make_strategy("fedprox", defaults=defaults).proximal_mu == 0.1
    assert make_strategy("fedprox", proximal_mu=0.5, defaults=defaults).proximal_mu == 0.5  # the caller's wins
    assert make_strategy("weighted", defaults=defaults).session_metric() == "holdout_auc"
    assert make_strategy("median", defaults=defaults).reservoir_size == 64
    assert make_strategy("trimmed-mean", defaults=defaults).trim_fraction == 0.1  # None: the class default
    with pytest.raises(ConfigError, match="does not take"):  # a caller's option still must fit
        make_strategy("fedavg", trim_fraction=0.1, defaults=defaults)
    with pytest.raises(ConfigError, match="fedprox needs a proximal term"):  # defaults are validated too
        make_strategy("fedprox", defaults={"proximal_mu": 0.0})


def test_streaming_equals_in_memory():
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(50, 7))
    examples = rng.integers(1, 100, size=50)
    ups = [update(r, examples=int(n), learner=str(i)) for i, (r, n) in enumerate(zip(rows, examples))]
    streamed = run(iter(ups), make_strategy("fedavg")).delta  # a one-pass generator
    in_memory = np.average(np.array([SPEC.flatten(u.tensors) for u in ups]), axis=0, weights=examples)
    np.testing.assert_allclose(streamed, in_memory, rtol=1e-12)
    np.testing.assert_allclose(run(iter(ups), make_strategy("median")).delta,
                               np.median(np.array([SPEC.flatten(u.tensors) for u in ups]), axis=0))


def test_reservoir_is_bounded_and_exact_up_to_its_size():
    rng = np.random.default_rng(5)
    ups = [update(r) for r in rng.normal(size=(40, 7))]
    small = run(ups, make_strategy("median", reservoir_size=8))
    large = run(ups, make_strategy("median", reservoir_size=64))
    assert not small.exact and large.exact
    assert small.state_bytes == 8 * 7 * 8 and large.state_bytes <= 64 * 7 * 8
    # a reservoir is a uniform sample: its median is close to the full one on average
    assert np.abs(small.delta - large.delta).mean() < 0.6


def test_mean_state_does_not_grow_with_learners():
    ups = [update(np.ones(7)) for _ in range(500)]
    assert run(ups[:5], FedAvg()).state_bytes == run(ups, FedAvg()).state_bytes == 7 * 8


vectors = st.lists(st.floats(-100, 100, allow_nan=False, width=32), min_size=7, max_size=7)


@settings(max_examples=40, deadline=None)
@given(values=vectors, count=st.integers(1, 12), examples=st.integers(1, 50),
       name=st.sampled_from(["fedavg", "median", "trimmed-mean"]))
def test_aggregate_of_identical_updates_is_that_update(values, count, examples, name):
    out = run([update(values, examples=examples) for _ in range(count)], make_strategy(name))
    np.testing.assert_allclose(out.delta, np.asarray(values, dtype=np.float32), rtol=1e-6, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(vectors, min_size=1, max_size=10), data=st.data(),
       name=st.sampled_from(["fedavg", "median", "trimmed-mean"]))
def test_aggregation_is_invariant_to_permutation(rows, data, name):
    ups = [update(r, examples=i + 1, learner=str(i)) for i, r in enumerate(rows)]
    order = data.draw(st.permutations(range(len(ups))))
    first = run(ups, make_strategy(name)).delta
    second = run([ups[i] for i in order], make_strategy(name)).delta
    np.testing.assert_allclose(first, second, rtol=1e-9, atol=1e-9)
