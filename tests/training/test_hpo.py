"""The Main Brain's hyperparameter search: its space, the portfolio tried after the base, pruning."""

from __future__ import annotations

import pytest

from aivo.brain.config import BrainConfig
from aivo.data.splits import split_by_learner
from aivo.training.hpo import (
    _base_values,
    _portfolio_trials,
    default_portfolio,
    default_search_space,
    search_hyperparameters,
)
from tests.training.conftest import TINY_BRAIN


def test_the_space_covers_what_differed_between_data_sets_and_holds_the_base():
    base = BrainConfig()
    space = default_search_space(base)
    assert {"learning_rate", "evidence_normalize", "weight_average_decay", "batch_size"} <= set(space)
    assert set(space["evidence_normalize"]["choices"]) == {"none", "sqrt", "mean"}
    point = _base_values(base, space)
    assert set(point) == set(space)  # trial 0 is the base config exactly
    assert BrainConfig().replace(**point) == base
    for entry in default_portfolio(base):  # every portfolio entry is a point of the space
        assert set(entry) <= set(space)
    assert len(_portfolio_trials(base, space, default_portfolio(base))) == len(default_portfolio(base))


def test_portfolio_entries_become_full_points_and_bad_ones_are_dropped():
    base = BrainConfig(learning_rate=2e-3, evidence_normalize="mean")
    space = default_search_space(base)
    points = _portfolio_trials(base, space, [
        {"evidence_normalize": "none"},
        {"evidence_normalize": "none"},  # a repeat
        {"evidence_normalize": base.evidence_normalize},  # the base itself
        {"learning_rate": 1.0},  # clipped into the range
        {"batch_size": 7},  # not a listed choice
        {"no_such_knob": 1},
    ])
    assert len(points) == 2 and all(set(p) == set(space) for p in points)
    assert points[0]["evidence_normalize"] == "none" and points[0]["learning_rate"] == base.learning_rate
    assert points[1]["learning_rate"] == pytest.approx(space["learning_rate"]["high"])


def test_search_tries_base_then_portfolio_and_prunes_a_hopeless_trial(cohort):
    split = split_by_learner(cohort, seed=0)
    base = BrainConfig(**{**TINY_BRAIN, "max_epochs": 4, "patience": 4, "learning_rate": 3e-3})
    space = {"learning_rate": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True}}
    result = search_hyperparameters(train=split.train, validation=split.validation, base_config=base, seed=0,
                                    trials=3, timeout_s=300, space=space,
                                    portfolio=[{"learning_rate": 5e-3}, {"learning_rate": 1e-6}],
                                    prune_after_epochs=1)
    trials = sorted(result.trials, key=lambda t: t["number"])
    assert [t["params"]["learning_rate"] for t in trials] == [3e-3, 5e-3, 1e-6]
    assert [t["state"] for t in trials[:2]] == ["complete", "complete"]
    # lr 1e-6 barely moves from its initialization: behind the median of the finished trials
    assert trials[2]["state"] == "pruned" and trials[2]["epochs_run"] < 4
    assert result.best_validation_auc == max(t["validation_auc"] for t in trials[:2])
    assert result.config.learning_rate in (3e-3, 5e-3)
