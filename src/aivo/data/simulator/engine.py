"""The practice engine: every learner takes one step per iteration, all in lockstep (NumPy over
the N learners), so the Python loop runs once per interaction *position*, never per interaction.

Per step and learner (equations in docs/data.md):
1. maybe start a new session (new day and hour, new subject);
2. pick a skill: the frontier of the learner's chain for that subject, a review of an earlier
   skill, or (after repeated errors) one of the frontier skill's prerequisites;
3. pick one of the skill's items at random;
4. P(correct) = c + (1 - c - s) * sigmoid(a * (theta - b) + accommodation[profile, type] + u[type]),
   with theta the retained (forgetting-decayed) ability on the item's skill(s);
5. draw the answer, a response time, and learn: the gain grows with prerequisite mastery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aivo.data.simulator.config import SimulatorConfig
from aivo.data.simulator.curriculum import NO_SKILL, Curriculum
from aivo.data.simulator.learners import LearnerTraits

SECONDARY_SKILL_SHARE = 0.5  # a two-skill item teaches its second (prerequisite) skill half as much
RT_DIFFICULTY_SLOPE = 0.15  # log-time change per logit of (theta - b): hard items take longer
MEAN_PAUSE_S = 15.0  # mean pause between two answers of a session
SECONDS_PER_DAY = 86_400.0

Progress = Callable[[int, int], None]  # (steps done, total steps)


@dataclass(frozen=True)
class PracticeRecord:
    """What happened. N learners, M interactions each, K skills."""

    item: np.ndarray  # (N, M) item index
    correct: np.ndarray  # (N, M) int8
    p_true: np.ndarray  # (N, M) probability the answer was drawn with
    response_time_s: np.ndarray  # (N, M)
    day: np.ndarray  # (N, M) days after config.start_date when the answer was given
    practice_count: np.ndarray  # (N, K) attempts that exercised each skill
    final_ability: np.ndarray  # (N, K) retained ability at the learner's last answer


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _table(rows: tuple[str, ...], cols: tuple[str, ...], values) -> np.ndarray:
    out = np.zeros((len(rows), len(cols)))
    for r, row in enumerate(rows):
        for c, col in enumerate(cols):
            out[r, c] = values.get(row, {}).get(col, 0.0)
    return out


def run_practice(config: SimulatorConfig, curriculum: Curriculum, traits: LearnerTraits,
                 rng: np.random.Generator, *, progress: Progress | None = None) -> PracticeRecord:
    n, steps = traits.num_learners, config.interactions_per_learner
    num_subjects, chain_length = len(curriculum.subjects), curriculum.chain.shape[2]
    rows = np.arange(n)
    type_names = tuple(curriculum.item_types["item_type"])
    effect = _table(config.profiles, type_names, config.accommodation_effects)  # (P, T) logits
    time_effect = _table(config.profiles, type_names, config.accommodation_time_effects)  # (P, T)
    log_median_time = np.log(curriculum.item_types["median_time_s"].to_numpy())  # (T,)
    items = curriculum.items
    a, b = items["discrimination"].to_numpy(), items["difficulty"].to_numpy()
    guess, slip = items["guessing"].to_numpy(), items["slip"].to_numpy()
    skill_difficulty = curriculum.skills["difficulty"].to_numpy()
    item_skills, item_type = curriculum.item_skill_index, curriculum.item_type_index
    prerequisites = curriculum.prerequisite_index
    learner_chain = curriculum.chain[traits.grade_index]  # (N, S, P)
    profile = traits.profile_index
    decay_rate = 1.0 / traits.forgetting_days  # (N,)
    kappa, gamma = config.prerequisite_floor, config.error_learning_factor

    theta0 = traits.initial_ability  # (N, K)
    gain = np.zeros_like(theta0)  # learned gain L_ik (decays with time since last practice)
    last_day = np.zeros_like(theta0)  # day of last practice; irrelevant while gain is 0
    count = np.zeros(theta0.shape, dtype=np.int32)
    frontier = np.zeros((n, num_subjects), dtype=np.int64)  # position reached in each chain
    attempts = np.zeros((n, num_subjects), dtype=np.int64)  # attempts on the frontier skill
    streak = np.zeros((n, num_subjects), dtype=np.int64)  # right answers in a row on it
    errors_in_row = np.zeros(n, dtype=np.int64)
    day = traits.start_day.copy()
    subject = np.zeros(n, dtype=np.int64)

    out_item = np.empty((steps, n), dtype=np.int64)
    out_correct = np.empty((steps, n), dtype=np.int8)
    out_p = np.empty((steps, n))
    out_rt = np.empty((steps, n))
    out_day = np.empty((steps, n))

    def retained(skill: np.ndarray, who: np.ndarray = rows) -> np.ndarray:
        """theta_ik(t) = theta0_ik + L_ik * exp(-(t - last_ik) / tau_i); `skill` (N,) or (N, k)."""
        if skill.ndim == 2:
            who, now, rate = who[:, None], day[:, None], decay_rate[:, None]
        else:
            now, rate = day, decay_rate
        return theta0[who, skill] + gain[who, skill] * np.exp(-(now - last_day[who, skill]) * rate)

    def prerequisite_mastery(skill: np.ndarray) -> np.ndarray:
        """M_ik: mean P(success on an average item) over k's prerequisites; 1 without any."""
        pre = prerequisites[skill]  # (N, MAX_PREREQUISITES)
        valid = pre != NO_SKILL
        safe = np.where(valid, pre, 0)
        mastery = sigmoid(retained(safe) - skill_difficulty[safe])
        num = valid.sum(axis=1)
        return np.where(num > 0, (mastery * valid).sum(axis=1) / np.maximum(num, 1), 1.0)

    for step in range(steps):
        # 1. sessions: a new one starts on a later day (or later the same day) at 8:00-20:00.
        new_session = rng.random(n) < 1.0 / config.session_length
        gap = rng.exponential(config.session_gap_days, n)
        hour = rng.uniform(8.0, 20.0, n)
        subject_draw = rng.integers(0, num_subjects, n)
        if step == 0:
            new_session[:] = True
            start = np.floor(day) + hour / 24.0
        else:
            start = np.floor(day + gap) + hour / 24.0
            start = np.where(start <= day, start + 1.0, start)
        day = np.where(new_session, start, day)
        subject = np.where(new_session, subject_draw, subject)

        # 2. skill: frontier, review or remediation.
        remediation_draw, review_draw, review_pick, remediation_pick = (rng.random(n) for _ in range(4))
        item_pick = rng.integers(0, config.items_per_skill, n)
        position = frontier[rows, subject]
        finished = position >= chain_length  # the whole chain is done: review only
        frontier_skill = learner_chain[rows, subject, np.minimum(position, chain_length - 1)]
        pre = prerequisites[frontier_skill]
        num_pre = (pre != NO_SKILL).sum(axis=1)
        remediate = ((errors_in_row >= 2) & (remediation_draw < config.remediation_rate) & (num_pre > 0)
                     & ~finished)
        review = ~remediate & (position > 0) & ((review_draw < config.review_rate) | finished)
        review_position = (review_pick * np.minimum(position, chain_length)).astype(np.int64)  # < position
        review_skill = learner_chain[rows, subject, review_position]
        remediation_skill = pre[rows, (remediation_pick * np.maximum(num_pre, 1)).astype(np.int64)]
        skill = np.where(remediate, remediation_skill, np.where(review, review_skill, frontier_skill))
        on_frontier = ~remediate & ~review

        # 3-4. item and the true probability of a right answer.
        item = skill * config.items_per_skill + item_pick
        first_skill = item_skills[item, 0]
        has_second = item_skills[item, 1] != NO_SKILL
        second_skill = np.where(has_second, item_skills[item, 1], first_skill)
        theta_first, theta_second = retained(first_skill), retained(second_skill)
        theta = np.where(has_second, 0.5 * (theta_first + theta_second), theta_first)
        kind = item_type[item]
        core = a[item] * (theta - b[item])
        logit = core + effect[profile, kind] + traits.type_offset[rows, kind]
        p_true = guess[item] + (1.0 - guess[item] - slip[item]) * sigmoid(logit)
        correct = rng.random(n) < p_true

        # 5. response time, learning, progress along the chain.
        log_rt = (log_median_time[kind] + traits.speed + time_effect[profile, kind]
                  - RT_DIFFICULTY_SLOPE * np.clip(core, -3.0, 3.0)
                  + rng.normal(0.0, config.response_time_sd, n))
        response_time = np.round(np.clip(np.exp(log_rt), 1.0, 1800.0), 2)
        pause = rng.exponential(MEAN_PAUSE_S, n)
        taught = np.where(correct, 1.0, gamma) * traits.learning_rate
        updates = []
        for skill_now, theta_now, share in ((first_skill, theta_first, 1.0),
                                            (second_skill, theta_second, SECONDARY_SKILL_SHARE)):
            headroom = 1.0 - sigmoid(theta_now - skill_difficulty[skill_now] - config.learning_headroom)
            boost = taught * share * (kappa + (1.0 - kappa) * prerequisite_mastery(skill_now)) * headroom
            updates.append((skill_now, theta_now - theta0[rows, skill_now] + boost))
        for (skill_now, new_gain), who in zip(updates, (rows, rows[has_second])):
            skill_now, new_gain = skill_now[who], new_gain[who]
            gain[who, skill_now] = new_gain
            last_day[who, skill_now] = day[who]
            count[who, skill_now] += 1

        attempts_now = attempts[rows, subject] + on_frontier
        streak_before = streak[rows, subject]
        streak_now = np.where(on_frontier, np.where(correct, streak_before + 1, 0), streak_before)
        mastered = (streak_now >= config.mastery_streak) & (attempts_now >= config.min_attempts_per_skill)
        advance = on_frontier & (mastered | (attempts_now >= config.max_attempts_per_skill))
        frontier[rows, subject] += advance
        attempts[rows, subject] = np.where(advance, 0, attempts_now)
        streak[rows, subject] = np.where(advance, 0, streak_now)
        errors_in_row = np.where(correct, 0, errors_in_row + 1)

        out_item[step], out_correct[step], out_p[step] = item, correct, p_true
        out_rt[step], out_day[step] = response_time, day
        day = day + (response_time + pause) / SECONDS_PER_DAY
        if progress is not None:
            progress(step + 1, steps)

    final = theta0 + gain * np.exp(-(day[:, None] - last_day) * decay_rate[:, None])
    return PracticeRecord(item=out_item.T, correct=out_correct.T, p_true=out_p.T, response_time_s=out_rt.T,
                          day=out_day.T, practice_count=count, final_ability=final)
