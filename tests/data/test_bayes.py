"""The Bayes-optimal predictor of the simulator: it replays exactly what was simulated, it is
exact when learners have no hidden traits, and otherwise it sits between a per-item baseline and
the oracle and is calibrated."""

from dataclasses import replace

import numpy as np
import pytest

from aivo.data.metrics import binary_metrics
from aivo.data.schema import InteractionLog
from aivo.data.simulator import SimulatorConfig, simulate_cohort
from aivo.data.simulator.bayes import BayesConfig, bayes_predictions, replay_true_probabilities
from aivo.errors import DataError

SMALL = SimulatorConfig(num_learners=200, interactions_per_learner=40)


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(config=SMALL, seed=4)


def _scored(log):
    return log.frame.groupby("learner_id", sort=False).cumcount().to_numpy() >= 1


def test_replay_with_the_hidden_traits_reproduces_p_true(cohort):
    replayed = replay_true_probabilities(cohort)
    # Timestamps are stored to the microsecond, so forgetting is replayed from rounded days.
    np.testing.assert_allclose(replayed, cohort.log.frame["p_true"].to_numpy(), rtol=0, atol=1e-9)


def test_without_hidden_traits_the_prediction_is_the_truth():
    """No learner-level variation at all: every hypothesis is the truth, so the posterior
    predictive must equal p_true exactly (the whole pipeline, moves included)."""
    rates = {"none": 1.0, "adhd": 0.0, "dyslexia": 0.0, "autism": 0.0, "anxiety": 0.0}
    flat = replace(SMALL, num_learners=20, ability_sd=0.0, skill_ability_sd=0.0, learning_rate_log_sd=0.0,
                   forgetting_log_sd=0.0, speed_sd=0.0, personal_type_sd=0.0, accommodation_rates=rates)
    cohort = simulate_cohort(config=flat, seed=1)
    result = bayes_predictions(cohort, config=BayesConfig(particles=8, ess_threshold=1.0), seed=0)
    np.testing.assert_allclose(result.p_correct, cohort.log.frame["p_true"].to_numpy(), rtol=0, atol=1e-9)


def test_posterior_predictive_sits_between_a_per_item_baseline_and_the_oracle(cohort):
    learners = sorted(cohort.log.frame["learner_id"].unique())
    log = cohort.log.select_learners(learners[:60])
    others = cohort.log.select_learners(learners[60:]).frame
    keep = _scored(log)
    frame = log.frame
    y, oracle = frame["correct"].to_numpy()[keep], frame["p_true"].to_numpy()[keep]
    item_rate = others.groupby("item_id")["correct"].mean()
    baseline = frame["item_id"].map(item_rate).fillna(others["correct"].mean()).to_numpy()[keep]
    bayes = bayes_predictions(cohort, log, config=BayesConfig(particles=200), seed=0)
    m_bayes, m_oracle, m_item = (binary_metrics(y, bayes.p_correct[keep]), binary_metrics(y, oracle),
                                 binary_metrics(y, baseline))
    assert m_item.auc + 0.03 < m_bayes.auc <= m_oracle.auc + 0.01
    assert m_oracle.log_loss - 0.005 <= m_bayes.log_loss < m_item.log_loss
    # A posterior predictive is calibrated on average.
    assert abs(bayes.p_correct[keep].mean() - y.mean()) < 0.03
    assert bayes.moves > 0 and 0.05 < bayes.acceptance <= 1.0


def test_same_seed_same_predictions(cohort):
    log = cohort.log.select_learners(sorted(cohort.log.frame["learner_id"].unique())[:5])
    config = BayesConfig(particles=50)
    first = bayes_predictions(cohort, log, config=config, seed=3).p_correct
    assert np.array_equal(first, bayes_predictions(cohort, log, config=config, seed=3).p_correct)
    assert not np.array_equal(first, bayes_predictions(cohort, log, config=config, seed=4).p_correct)


def test_a_log_of_another_curriculum_is_refused(cohort):
    other = simulate_cohort(config=replace(SMALL, num_learners=5, items_per_skill=12), seed=4)
    with pytest.raises(DataError, match="not in the cohort's curriculum"):
        bayes_predictions(cohort, other.log)
    with pytest.raises(DataError, match="particles"):
        BayesConfig(particles=1)


def test_a_log_without_profiles_or_response_times_is_inferred(cohort):
    """Without the accommodation column the profile is inferred (moves included); without
    response times only the answers are evidence. Both still beat a per-item baseline."""
    learners = sorted(cohort.log.frame["learner_id"].unique())
    frame = cohort.log.select_learners(learners[:30]).frame.drop(columns=["accommodation", "response_time_s"])
    log = InteractionLog(frame, source="stripped")
    result = bayes_predictions(cohort, log, config=BayesConfig(particles=100), seed=0)
    keep = _scored(log)
    assert np.isfinite(result.p_correct).all() and result.moves > 0
    others = cohort.log.select_learners(learners[30:]).frame
    baseline = frame["item_id"].map(others.groupby("item_id")["correct"].mean()).fillna(0.6).to_numpy()
    y = frame["correct"].to_numpy()
    assert binary_metrics(y[keep], result.p_correct[keep]).auc > binary_metrics(y[keep], baseline[keep]).auc + 0.02
