"""Warnings before anything runs."""

from __future__ import annotations

import pytest

from aivo.config import Settings
from aivo.privacy.planning import plan_from_settings, plan_privacy


def plan(**overrides):
    values = dict(enabled=True, noise_multiplier=1.0, sample_rate=0.01, clip_norm=1.0, delta=1e-5,
                  epsilon_budget=8.0)
    values.update(overrides)
    return plan_privacy(**values)


def test_sound_settings_give_no_warning():
    p = plan(planned_rounds=1000)
    assert p.warnings == [] and p.meaningful
    assert p.epsilon_planned == pytest.approx(2.10, abs=0.005)
    assert p.rounds_within_budget > 1000


def test_seed_design_noise_is_flagged_as_no_privacy():
    p = plan(noise_multiplier=0.1, sample_rate=1.0, planned_rounds=5)
    assert not p.meaningful
    assert any("no meaningful privacy" in w for w in p.warnings)
    assert any("more than the budget" in w for w in p.warnings)
    assert 340 <= p.epsilon_planned <= 356


def test_budget_shorter_than_the_plan():
    p = plan(sample_rate=0.2, planned_rounds=500)
    assert any("covers" in w and "500 planned" in w for w in p.warnings)


def test_dp_off_and_zero_noise():
    assert "OFF" in plan(enabled=False).warnings[0]
    assert "no privacy at all" in plan(noise_multiplier=0.0).warnings[0]


def test_delta_large_next_to_learner_count():
    assert any("1/N" in w for w in plan(delta=0.01, num_learners=1000).warnings)


def test_from_settings_uses_the_service_defaults(tmp_path):
    p = plan_from_settings(Settings(home=tmp_path, noise_multiplier=0.1, sampling_rate=1.0))
    assert not p.meaningful and p.noise_multiplier == 0.1


def test_a_budget_for_very_few_rounds_is_flagged_without_a_plan():
    # Full participation with sigma 1: one round costs about 4.7 and two about 7.2 (RDP composes
    # sublinearly), so a budget of 8 covers two.
    p = plan(sample_rate=1.0)
    assert p.rounds_within_budget == 2 and p.epsilon_one_round == pytest.approx(4.73, abs=0.02)
    assert any("covers only 2 round" in w for w in p.warnings)
    assert not any("covers only" in w for w in plan().warnings)  # q = 0.01 covers thousands
