"""User-level DP: clipping, the noise scale (statistically, fixed seed), sampling, bounded influence."""

from __future__ import annotations

import numpy as np
import pytest

from aivo.errors import ConfigError
from aivo.federated.aggregate import aggregate_updates
from aivo.federated.dp import UserLevelDP, capped_weight, clip_to_norm, gaussian_noise, poisson_sample
from aivo.federated.strategies import make_strategy

from .helpers import SPEC, update


def test_clip_to_norm_scales_only_long_vectors():
    v = np.array([3.0, 4.0])
    clipped, norm = clip_to_norm(v, 1.0)
    assert norm == 5.0 and np.linalg.norm(clipped) == pytest.approx(1.0)
    np.testing.assert_allclose(clipped / np.linalg.norm(clipped), v / 5.0)  # direction kept
    same, _ = clip_to_norm(v, 10.0)
    np.testing.assert_array_equal(same, v)


def test_noise_has_the_requested_standard_deviation():
    noise = gaussian_noise(numel=200_000, std=0.7, generator=np.random.default_rng(0))
    # std estimate of 200k normals: relative standard error ~0.16%; 1% is far outside chance
    assert noise.std() == pytest.approx(0.7, rel=0.01)
    assert abs(noise.mean()) < 0.01


def test_poisson_sampling_rate():
    mask = poisson_sample(100_000, sample_rate=0.05, generator=np.random.default_rng(1))
    assert mask.mean() == pytest.approx(0.05, abs=0.003)  # ~4 standard errors
    assert poisson_sample(10, sample_rate=1.0, generator=np.random.default_rng(1)).all()


def dp_run(updates, *, sigma, clip=1.0, q=0.5, eligible=4, seed=0, name="fedavg", cap=None):
    strategy = UserLevelDP(noise_multiplier=sigma, clip_norm=clip, sample_rate=q, weight_cap=cap).wrap(
        make_strategy(name), num_eligible=eligible)
    return aggregate_updates(updates=updates, spec=SPEC, strategy=strategy, clip_norm=123.0,
                             server_learning_rate=1.0, generator=np.random.default_rng(seed))


def test_dp_sum_is_clipped_capped_and_divided_by_the_fixed_denominator():
    ups = [update([10, 0, 0, 0, 0, 0, 0], examples=200), update([0, 0.5, 0, 0, 0, 0, 0], examples=50)]
    out = dp_run(ups, sigma=0.0, q=0.5, eligible=4, cap=100.0)
    # clipped to norm 1: [1,0..] (weight min(200/100,1)=1) and [0,.5..] (weight .5); / (0.5 * 4)
    np.testing.assert_allclose(out.delta, np.array([1, 0.25, 0, 0, 0, 0, 0]) / 2.0)
    assert out.num_clipped == 1


def test_dp_noise_scale_statistically():
    # sigma 2, C 0.5: the sum gets N(0, 1) per coordinate, divided by q * N = 5
    samples = np.array([dp_run([update(np.zeros(7))], sigma=2.0, clip=0.5, q=0.5, eligible=10, seed=s).delta
                        for s in range(3000)])
    assert samples.std() == pytest.approx(1.0 / 5.0, rel=0.03)
    assert abs(samples.mean()) < 0.01


def test_adding_one_learner_moves_the_noiseless_sum_by_at_most_c():
    rng = np.random.default_rng(2)
    base = [update(rng.normal(size=7) * 5, examples=int(n)) for n in rng.integers(1, 500, size=20)]
    extra = update(np.full(7, 1e6), examples=10_000)
    q, eligible, clip = 0.3, 50, 1.5
    without = dp_run(base, sigma=0.0, clip=clip, q=q, eligible=eligible).delta
    with_one = dp_run(base + [extra], sigma=0.0, clip=clip, q=q, eligible=eligible).delta
    assert np.linalg.norm((with_one - without) * q * eligible) <= clip + 1e-9


def test_a_huge_update_moves_the_model_by_at_most_its_clipped_share_without_dp():
    honest = [update(np.zeros(7), examples=10) for _ in range(9)]
    attacker = update(np.full(7, 1e9), examples=10)
    out = aggregate_updates(updates=honest + [attacker], spec=SPEC, strategy=make_strategy("fedavg"),
                            clip_norm=2.0, server_learning_rate=1.0, generator=np.random.default_rng(0))
    assert np.linalg.norm(out.delta) == pytest.approx(2.0 / 10)  # its weight share times C


def test_robust_strategies_are_refused_under_dp():
    for name in ("median", "trimmed-mean"):
        with pytest.raises(ConfigError, match="cannot run under user-level DP"):
            UserLevelDP(noise_multiplier=1.0, clip_norm=1.0, sample_rate=0.1).wrap(make_strategy(name),
                                                                                    num_eligible=10)


def test_dp_parameters_validate_themselves():
    for bad in (dict(noise_multiplier=-1), dict(clip_norm=0), dict(sample_rate=0), dict(sample_rate=1.5),
                dict(weight_cap=0)):
        with pytest.raises(ConfigError):
            UserLevelDP(**{"noise_multiplier": 1.0, "clip_norm": 1.0, "sample_rate": 0.5, **bad})


def test_noise_is_released_even_when_nobody_took_part():
    out = dp_run([], sigma=1.0, q=0.5, eligible=10)
    assert out.delta is not None and np.abs(out.delta).sum() > 0


def test_capped_weight():
    assert capped_weight(50, 100) == 0.5 and capped_weight(500, 100) == 1.0 and capped_weight(-1, 100) == 0.0
