"""The recommendation policies on a hand-made catalog: registry, choices, prerequisites, reviews."""

import numpy as np
import pytest

from aivo.brain.bkt import BKTParams
from aivo.brain.policies import LearnerStates, PolicyCatalog, StepInput, build_policy, policy_names
from aivo.errors import ConfigError

# one grade (3), two subjects x 3 skills in teaching order, 4 items per skill
SKILLS = [f"{s}.g3.s0{p}" for s in ("math", "read") for p in (1, 2, 3)]


def catalog(bkt: bool = False) -> PolicyCatalog:
    k = len(SKILLS)
    item_skill = np.repeat(np.arange(k), 4)
    params = None
    if bkt:
        params = BKTParams(skills=tuple(SKILLS), prior=np.full(k, 0.2), learn=np.full(k, 0.3), guess=np.full(k, 0.2),
                           slip=np.full(k, 0.1), num_attempts=np.full(k, 100))
    return PolicyCatalog(
        item_ids=np.array([f"{SKILLS[s]}.i{j}" for s, j in zip(item_skill, np.tile(np.arange(4), k))], dtype=object),
        item_skill=item_skill, item_skill_set=[(int(s),) for s in item_skill], item_grade=np.full(4 * k, 3),
        item_subject=item_skill // 3, skill_ids=np.array(SKILLS, dtype=object), skill_grade=np.full(k, 3),
        skill_subject=np.arange(k) // 3, skill_position=np.arange(k) % 3,
        prerequisite=np.array([-1, 0, 1, -1, 3, 4]), bkt=params)


def step(cat, states, p=None, day=0.0):
    rows = np.tile(np.arange(cat.num_items), (states.num_learners, 1))
    return StepInput(catalog=cat, states=states, day=np.full(states.num_learners, day), rng=np.random.default_rng(0),
                     candidates=rows, valid=np.ones(rows.shape, bool),
                     p_correct=None if p is None else np.tile(p, (states.num_learners, 1)))


def test_registry_knows_the_five_policies_and_refuses_others():
    assert policy_names() == ["fixed-curriculum", "random-in-grade", "mastery-bkt", "aivo-target", "aivo-gain"]
    with pytest.raises(ConfigError, match="unknown policy 'best'; known: fixed-curriculum"):
        build_policy("best")
    with pytest.raises(ConfigError, match="aivo-gain"):
        build_policy("aivo-gain", nonsense=1)


def test_fixed_curriculum_interleaves_subjects_in_teaching_order():
    cat = catalog()
    states = LearnerStates(grade=np.array([3]), num_skills=cat.num_skills, num_items=cat.num_items)
    policy = build_policy("fixed-curriculum", items_per_skill=2)
    seen = []
    for _ in range(12):
        row = policy.choose(step(cat, states))
        seen.append(cat.item_ids[row[0]].rsplit(".", 1)[0])
        states.record(cat, row, np.array([1]), np.array([0.0]))
    assert seen == [SKILLS[k] for k in (0, 0, 3, 3, 1, 1, 4, 4, 2, 2, 5, 5)]


def test_mastery_learning_moves_on_at_095():
    cat = catalog(bkt=True)
    states = LearnerStates(grade=np.array([3]), num_skills=cat.num_skills, num_items=cat.num_items)
    states.bkt_known = np.full((1, cat.num_skills), 0.2)
    policy = build_policy("mastery-bkt")
    skills = []
    for _ in range(6):
        row = policy.choose(step(cat, states))
        skills.append(int(cat.item_skill[row[0]]))
        known_before = states.bkt_known[0, skills[-1]]
        states.record(cat, row, np.array([1]), np.array([0.0]))
        assert states.bkt_known[0, skills[-1]] > known_before
    first_done = skills.index(3) if 3 in skills else len(skills)
    assert all(s == 0 for s in skills[:first_done])  # math s01 until P(known) >= 0.95, then read s01
    assert states.bkt_known[0, 0] >= 0.95 and 3 in skills


def test_random_in_grade_stays_in_grade():
    cat = catalog()
    states = LearnerStates(grade=np.full(50, 3), num_skills=cat.num_skills, num_items=cat.num_items)
    rows = build_policy("random-in-grade").choose(step(cat, states))
    assert (cat.item_grade[rows] == 3).all() and len(set(rows.tolist())) > 10


def test_aivo_gain_respects_prerequisites_and_interleaves():
    cat = catalog()
    states = LearnerStates(grade=np.array([3]), num_skills=cat.num_skills, num_items=cat.num_items)
    p = np.repeat([0.95, 0.3, 0.2, 0.3, 0.9, 0.25], 4)  # math s01 known; read s02 known, read s01 not
    policy = build_policy("aivo-gain")
    _, gain, _ = policy.skill_scores(step(cat, states, p))
    # math s02 (prerequisite known) beats math s03 (prerequisite not) and read s01 (no prerequisite, low mastery)
    assert gain[0, 1] > gain[0, 2] and gain[0, 1] == pytest.approx(0.7)
    assert gain[0, 5] == pytest.approx(0.75)  # read s03: prerequisite read s02 is known
    row = policy.choose(step(cat, states, p))[0]
    assert cat.item_skill[row] == 5
    states.record(cat, np.array([row]), np.array([0]), np.array([0.0]))
    _, gain, _ = policy.skill_scores(step(cat, states, p))
    assert gain[0, 5] == pytest.approx(0.375)  # the same skill again only at half its gain: interleave
    row2 = policy.choose(step(cat, states, p))[0]
    assert cat.item_skill[row2] == 3  # read s01 and math s02 tie at 0.7: teaching order (subjects interleaved)


def test_aivo_gain_reviews_a_mastered_skill_before_it_is_forgotten():
    cat = catalog()
    states = LearnerStates(grade=np.array([3]), num_skills=cat.num_skills, num_items=cat.num_items)
    p = np.repeat([0.95, 0.3, 0.2, 0.3, 0.9, 0.25], 4)
    states.record(cat, np.array([0]), np.array([1]), np.array([0.0]))  # math s01 practised on day 0
    policy = build_policy("aivo-gain")
    assert cat.item_skill[policy.choose(step(cat, states, p, day=1.0))[0]] != 0  # recall still >= 0.9
    late = step(cat, states, p, day=30.0)
    _, _, due = policy.skill_scores(late)
    assert due[0, 0] and cat.item_skill[policy.choose(late)[0]] == 0


def test_replaying_a_history_equals_recording_it_answer_by_answer():
    cat = catalog()
    cat = PolicyCatalog(**{**{f: getattr(cat, f) for f in ("item_ids", "item_skill", "item_grade", "item_subject",
                                                            "skill_ids", "skill_grade", "skill_subject",
                                                            "skill_position", "prerequisite")},
                           "item_skill_set": [(int(s),) if s % 3 == 0 else (int(s), int(s) - 1)
                                              for s in cat.item_skill]})  # two-skill items too
    rng = np.random.default_rng(3)
    rows = rng.integers(0, cat.num_items, 37)
    correct = rng.integers(0, 2, 37)
    day = np.cumsum(rng.choice([0.001, 0.5, 2.5], 37))
    stepwise = LearnerStates(grade=np.array([3]), num_skills=cat.num_skills, num_items=cat.num_items)
    for r, c, d in zip(rows, correct, day):
        stepwise.record(cat, np.array([r]), np.array([c]), np.array([d]))
    replayed = LearnerStates.from_history(cat, 3, rows, correct, day)
    for name in ("attempts", "last_day", "recent_items", "recent_correct", "item_attempts"):
        assert np.array_equal(getattr(stepwise, name), getattr(replayed, name), equal_nan=True), name
    for name in ("stability", "difficulty", "last_day"):
        assert np.allclose(getattr(stepwise.memory, name), getattr(replayed.memory, name), equal_nan=True), name
    assert stepwise.steps == replayed.steps == 37
    assert np.array_equal(stepwise.recent_skill_counts(cat), replayed.recent_skill_counts(cat))
