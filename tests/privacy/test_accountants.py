"""Accountants against published reference values, their registry and their state."""

from __future__ import annotations

import math

import pytest

from aivo.errors import ConfigError
from aivo.privacy.accountants import (
    OpacusRDPAccountant,
    accountant_names,
    epsilon_for,
    make_accountant,
    max_steps_within,
    noise_multiplier_for,
    register_accountant,
)


def test_issue_reference_rdp_2_10():
    # Poisson rate 0.01, sigma 1.0, 1000 steps, delta 1e-5 -> epsilon 2.10 (RDP).
    assert epsilon_for(history=[(1.0, 0.01, 1000)], delta=1e-5, accountant="rdp") == pytest.approx(2.10, abs=0.005)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_issue_reference_sigma_0_1_gives_no_privacy(accountant):
    # The seed design's noise multiplier 0.1 on full batches for 5 steps: epsilon about 345-355.
    eps = epsilon_for(history=[(0.1, 1.0, 5)], delta=1e-5, accountant=accountant)
    assert 340 <= eps <= 356


def test_opacus_reference_7_329():
    # Opacus' own test: sigma 1.5, q 0.04, 2250 steps, delta 1e-5 -> 7.329 (RDP).
    assert epsilon_for(history=[(1.5, 0.04, 2250)], delta=1e-5) == pytest.approx(7.329, abs=0.001)


def test_tighter_accountants_are_below_rdp():
    rdp = epsilon_for(history=[(1.0, 0.01, 1000)], delta=1e-5, accountant="rdp")
    prv = epsilon_for(history=[(1.0, 0.01, 1000)], delta=1e-5, accountant="prv")
    assert prv < rdp and prv == pytest.approx(1.84, abs=0.05)


def test_step_composes_and_merges_runs():
    acc = make_accountant("rdp")
    for _ in range(10):
        acc.step(noise_multiplier=1.0, sample_rate=0.1)
    acc.step(noise_multiplier=2.0, sample_rate=0.1, steps=5)
    assert acc.history == ((1.0, 0.1, 10), (2.0, 0.1, 5))
    direct = epsilon_for(history=[(1.0, 0.1, 10), (2.0, 0.1, 5)], delta=1e-5)
    assert acc.get_epsilon(delta=1e-5) == pytest.approx(direct)
    assert acc.get_epsilon(delta=1e-5) > epsilon_for(history=[(1.0, 0.1, 10)], delta=1e-5)


def test_empty_history_and_zero_noise():
    assert make_accountant("rdp").get_epsilon(delta=1e-5) == 0.0
    assert math.isinf(epsilon_for(history=[(0.0, 0.5, 1)], delta=1e-5))


def test_state_round_trip_and_mismatch():
    acc = make_accountant("rdp", history=[(1.0, 0.2, 3)])
    state = acc.state_dict()
    other = make_accountant("rdp")
    other.load_state_dict(state)
    assert other.history == acc.history
    with pytest.raises(ValueError, match="given to 'prv'"):
        make_accountant("prv").load_state_dict(state)
    with pytest.raises(ValueError, match="not an accountant state"):
        other.load_state_dict({"kind": "something else"})


def test_registry_rejects_unknown_and_duplicate_names():
    assert {"rdp", "prv", "pld"} <= set(accountant_names())
    with pytest.raises(ConfigError, match="unknown privacy accountant"):
        make_accountant("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_accountant("rdp", OpacusRDPAccountant)


def test_invalid_steps_are_refused():
    with pytest.raises(ValueError):
        epsilon_for(history=[(1.0, 0.0, 1)], delta=1e-5)
    with pytest.raises(ValueError):
        epsilon_for(history=[(-1.0, 0.5, 1)], delta=1e-5)
    with pytest.raises(ValueError):
        epsilon_for(history=[(1.0, 0.5, 1)], delta=2.0)


def test_max_steps_within_budget_is_tight():
    steps = max_steps_within(budget=4.0, delta=1e-5, noise_multiplier=1.0, sample_rate=0.1)
    assert epsilon_for(history=[(1.0, 0.1, steps)], delta=1e-5) <= 4.0
    assert epsilon_for(history=[(1.0, 0.1, steps + 1)], delta=1e-5) > 4.0
    assert max_steps_within(budget=1.0, delta=1e-5, noise_multiplier=0.1, sample_rate=1.0) == 0


def test_noise_calibration_meets_the_target():
    sigma = noise_multiplier_for(target_epsilon=4.0, delta=1e-5, sample_rate=0.05, steps=200)
    assert epsilon_for(history=[(sigma, 0.05, 200)], delta=1e-5) <= 4.0
    assert epsilon_for(history=[(sigma * 0.95, 0.05, 200)], delta=1e-5) > 4.0 * 0.98
