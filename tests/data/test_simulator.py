"""The simulator: validated config, determinism, shapes, and that its ground truth behaves as
the model says (oracle beats a naive baseline, learning, forgetting, accommodation effects)."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from aivo.data.schema import validate_frame
from aivo.data.simulator import SimulatorConfig, oracle_metrics, simulate_cohort
from aivo.errors import ConfigError, DataError

SMALL = SimulatorConfig(num_learners=300, interactions_per_learner=40)


@pytest.fixture(scope="module")
def cohort():
    """A mid-size cohort shared by the statistical tests (about a second to build)."""
    return simulate_cohort(config=SimulatorConfig(num_learners=3000, interactions_per_learner=60), seed=11)


@pytest.mark.parametrize("changes,fragment", [
    ({"num_learners": 0}, "num_learners must be a positive integer"),
    ({"grades": (3, 13)}, "grades must be distinct values in 0..12"),
    ({"subjects": ("math", "art")}, "no item-type mix for subject 'art'"),
    ({"review_rate": 1.5}, "review_rate must be in [0, 1]"),
    ({"accommodation_rates": {"none": 0.5, "adhd": 0.2}}, "sum to 1"),
    ({"accommodation_effects": {"none": {"origami": -1.0}}}, "unknown item type(s) ['origami']"),
    ({"max_attempts_per_skill": 2}, "max_attempts_per_skill must be at least min_attempts_per_skill"),
    ({"start_date": "next monday"}, "start_date must be an ISO date"),
    ({"forgetting_days": 0}, "forgetting_days must be > 0"),
])
def test_config_is_validated(changes, fragment):
    with pytest.raises(ConfigError) as err:
        SimulatorConfig(**changes)
    assert fragment in err.value.message


def test_same_seed_same_cohort_other_seed_other_cohort():
    first = simulate_cohort(config=SMALL, seed=5)
    again = simulate_cohort(config=SMALL, seed=5)
    other = simulate_cohort(config=SMALL, seed=6)
    assert first.log.frame.equals(again.log.frame)
    assert first.learners.equals(again.learners)
    assert np.array_equal(first.final_ability, again.final_ability)
    assert not first.log.frame["correct"].equals(other.log.frame["correct"])
    # The curriculum depends on the seed only, not on the cohort size.
    bigger = simulate_cohort(config=replace(SMALL, num_learners=500), seed=5)
    assert bigger.curriculum.items.equals(first.curriculum.items)


def test_shapes_and_schema():
    cohort = simulate_cohort(config=SMALL, seed=0)
    f = cohort.log.frame
    n, m, k = SMALL.num_learners, SMALL.interactions_per_learner, cohort.curriculum.num_skills
    assert len(f) == n * m and cohort.log.num_learners == n
    for column in ("learner_id", "item_id", "skill_ids", "correct", "order", "timestamp", "response_time_s",
                   "subject", "grade", "item_type", "p_true", "accommodation"):
        assert column in f.columns
    assert validate_frame(f).equals(f)  # already in schema form and sorted
    assert f.groupby("learner_id")["order"].apply(lambda s: s.tolist() == list(range(m))).all()
    assert f.groupby("learner_id")["timestamp"].apply(lambda s: s.is_monotonic_increasing).all()
    assert f["p_true"].between(0, 1, inclusive="neither").all()
    assert set(f["correct"].unique()) <= {0, 1}
    assert (f["response_time_s"] > 0).all()
    assert set(f["item_id"]) <= set(cohort.curriculum.items["item_id"])
    assert cohort.learners.shape[0] == n and list(cohort.learners["learner_id"]) == sorted(f["learner_id"].unique())
    assert cohort.initial_ability.shape == cohort.final_ability.shape == cohort.practice_count.shape == (n, k)
    assert cohort.practice_count.sum() >= n * m  # two-skill items exercise two skills
    assert {"type_offset_long_reading", "accommodation", "learning_rate"} <= set(cohort.learners.columns)


def test_curriculum_prerequisites_form_chains():
    curriculum = simulate_cohort(config=SMALL, seed=0).curriculum
    skills = curriculum.skills.set_index("skill_id")
    for prerequisite, skill in curriculum.prerequisite_edges():
        a, b = skills.loc[prerequisite], skills.loc[skill]
        assert a["subject"] == b["subject"]
        # earlier in the same grade, or the previous grade's last skill
        assert (a["grade"] == b["grade"] and a["position"] < b["position"]) or a["grade"] < b["grade"]
    assert curriculum.items["discrimination"].gt(0).all()
    assert curriculum.items["guessing"].between(0, 1).all()


def test_oracle_beats_a_per_item_baseline(cohort):
    f = cohort.log.frame
    oracle = oracle_metrics(cohort.log)
    # Even fitted in-sample, per-item success rates fall well short of the true probabilities.
    item_rate = f.groupby("item_id")["correct"].transform("mean").clip(0.01, 0.99)
    assert oracle.auc > roc_auc_score(f["correct"], item_rate) + 0.05
    assert oracle.log_loss < log_loss(f["correct"], item_rate)
    assert abs(oracle.positive_rate - f["p_true"].mean()) < 0.01  # answers are drawn from p_true
    assert oracle.ece < 0.02
    skipped = oracle_metrics(cohort.log, skip_first_attempt=True)
    assert skipped.n == oracle.n - cohort.log.num_learners


def test_oracle_needs_p_true(cohort):
    with pytest.raises(DataError, match="p_true"):
        oracle_metrics(cohort.log.frame.drop(columns="p_true"))


def test_learning_increases_success_with_practice(cohort):
    f = cohort.log.frame.assign(skill=lambda d: d["skill_ids"].str.split(";").str[0])
    attempt = f.groupby(["learner_id", "skill"]).cumcount()
    by_attempt = f.groupby(attempt)["p_true"].mean()
    assert by_attempt[3] > by_attempt[0] + 0.03
    practiced = cohort.practice_count > 0
    assert (cohort.final_ability - cohort.initial_ability)[practiced].mean() > 0.2
    assert np.allclose((cohort.final_ability - cohort.initial_ability)[~practiced], 0)
    config = replace(cohort.config, num_learners=1000)
    learning = simulate_cohort(config=config, seed=3).log.frame["p_true"].mean()
    no_learning = simulate_cohort(config=replace(config, learning_rate=0.0), seed=3).log.frame["p_true"].mean()
    assert learning > no_learning + 0.02


def test_forgetting_erodes_gains():
    config = SimulatorConfig(num_learners=1000, interactions_per_learner=60, session_gap_days=5.0)
    remembering = simulate_cohort(config=replace(config, forgetting_days=10_000.0), seed=4)
    forgetting = simulate_cohort(config=replace(config, forgetting_days=1.0), seed=4)
    assert remembering.log.frame["p_true"].mean() > forgetting.log.frame["p_true"].mean() + 0.01


def test_practice_follows_the_prerequisite_order(cohort):
    f = cohort.log.frame
    skills = cohort.curriculum.skills.set_index("skill_id")
    first_seen = f.assign(skill=f["skill_ids"].str.split(";").str[0]).drop_duplicates(["learner_id", "skill"])
    first_seen = first_seen.join(skills[["position"]].rename(columns={"position": "pos"}), on="skill")
    first_seen = first_seen.join(skills[["grade"]].rename(columns={"grade": "skill_grade"}), on="skill")
    own = first_seen[first_seen["skill_grade"] == first_seen["grade"].astype(int)]
    in_order = own.groupby(["learner_id", "subject"])["pos"].apply(lambda s: s.tolist() == list(range(len(s))))
    assert in_order.mean() > 0.99  # new skills are met in teaching order (reviews only go back)
    skill_grade = skills["grade"].reindex(f["skill_ids"].str.split(";").str[0]).to_numpy()
    assert (skill_grade == f["grade"].to_numpy(dtype=int)).mean() > 0.9  # mostly at the learner's grade


def _type_gap(frame, profile, item_type):
    """Difference-in-differences of observed success: profile vs none, on item_type vs the rest."""
    rate = frame.groupby(["accommodation", frame["item_type"] == item_type])["correct"].mean()
    return (rate[(profile, True)] - rate[(profile, False)]) - (rate[("none", True)] - rate[("none", False)])


@pytest.mark.parametrize("profile,item_type", [("dyslexia", "long_reading"), ("adhd", "multi_step"),
                                               ("anxiety", "timed_drill")])
def test_accommodation_effects_are_measurable(cohort, profile, item_type):
    assert _type_gap(cohort.log.frame, profile, item_type) < -0.08


def test_personal_type_offsets_are_measurable(cohort):
    f = cohort.log.frame
    per_type = f.groupby(["learner_id", "item_type"])["correct"].agg(["mean", "size"])
    per_type = per_type[per_type["size"] >= 5]
    relative = per_type["mean"] - f.groupby("learner_id")["correct"].mean().reindex(
        per_type.index.get_level_values(0)).to_numpy()
    offsets = cohort.learners.set_index("learner_id")
    truth = [offsets.loc[learner, f"type_offset_{kind}"] for learner, kind in per_type.index]
    assert np.corrcoef(truth, relative.to_numpy())[0, 1] > 0.15


def test_response_times_follow_item_types(cohort):
    f = cohort.log.frame
    median = f.groupby("item_type")["response_time_s"].median()
    assert median["timed_drill"] < median["multiple_choice"] < median["long_reading"]
    dyslexia = f[(f["accommodation"] == "dyslexia") & (f["item_type"] == "long_reading")]["response_time_s"]
    none = f[(f["accommodation"] == "none") & (f["item_type"] == "long_reading")]["response_time_s"]
    assert dyslexia.median() > 1.3 * none.median()


def test_bad_seed_is_refused():
    with pytest.raises(DataError, match="seed"):
        simulate_cohort(config=SMALL, seed=-1)


def test_truth_tables_are_written(tmp_path):
    cohort = simulate_cohort(config=SMALL, seed=0)
    written = cohort.save_truth(tmp_path / "truth")
    assert {p.name for p in written} == {"skills.csv", "items.csv", "item_types.csv", "learners.csv"}
    assert len(pd.read_csv(tmp_path / "truth" / "learners.csv")) == SMALL.num_learners
