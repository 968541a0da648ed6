"""The practice engine: every learner takes one step per iteration, all in lockstep (NumPy over
the N learners), so the Python loop runs once per interaction *position*, never per interaction.

Per step and learner (equations in docs/data.md):
1. maybe start a new session (new day and hour, new subject);
2. pick a skill: the frontier of the learner's chain for that subject, a review of an earlier
   skill, or (after repeated errors) one of the frontier skill's prerequisites;
3. pick one of the skill's items at random;
4. the learner model answers it and learns (the project's simulator: P(correct) = c + (1 - c - s)
   * sigmoid(a * (theta - b) + accommodation[profile, type] + u[type]), with theta the retained
   (forgetting-decayed) ability on the item's skill(s); the gain grows with prerequisite mastery;
   see learner_models.py for the others);
5. a response time and a pause before the next answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aivo.data.simulator.config import SimulatorConfig
from aivo.data.simulator.curriculum import NO_SKILL, Curriculum
from aivo.data.simulator.learner_models import SimulatedLearners

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
    final_ability: np.ndarray  # (N, K) the learner model's per-skill state at the learner's last answer


def run_practice(config: SimulatorConfig, curriculum: Curriculum, learners: SimulatedLearners,
                 rng: np.random.Generator, *, progress: Progress | None = None) -> PracticeRecord:
    n, steps = learners.num_learners, config.interactions_per_learner
    num_subjects, chain_length = len(curriculum.subjects), curriculum.chain.shape[2]
    rows = np.arange(n)
    prerequisites = curriculum.prerequisite_index
    learner_chain = curriculum.chain[learners.grade_index]  # (N, S, P)
    frontier = np.zeros((n, num_subjects), dtype=np.int64)  # position reached in each chain
    attempts = np.zeros((n, num_subjects), dtype=np.int64)  # attempts on the frontier skill
    streak = np.zeros((n, num_subjects), dtype=np.int64)  # right answers in a row on it
    errors_in_row = np.zeros(n, dtype=np.int64)
    day = learners.start_day.copy()
    subject = np.zeros(n, dtype=np.int64)

    out_item = np.empty((steps, n), dtype=np.int64)
    out_correct = np.empty((steps, n), dtype=np.int8)
    out_p = np.empty((steps, n))
    out_rt = np.empty((steps, n))
    out_day = np.empty((steps, n))

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

        # 3-4. item, the answer (true probability, response time) and learning.
        item = skill * config.items_per_skill + item_pick
        response = learners.respond(item, day, rng)
        correct, response_time = response.correct, response.response_time_s

        # 5. pause, progress along the chain.
        pause = rng.exponential(MEAN_PAUSE_S, n)

        attempts_now = attempts[rows, subject] + on_frontier
        streak_before = streak[rows, subject]
        streak_now = np.where(on_frontier, np.where(correct, streak_before + 1, 0), streak_before)
        mastered = (streak_now >= config.mastery_streak) & (attempts_now >= config.min_attempts_per_skill)
        advance = on_frontier & (mastered | (attempts_now >= config.max_attempts_per_skill))
        frontier[rows, subject] += advance
        attempts[rows, subject] = np.where(advance, 0, attempts_now)
        streak[rows, subject] = np.where(advance, 0, streak_now)
        errors_in_row = np.where(correct, 0, errors_in_row + 1)

        out_item[step], out_correct[step], out_p[step] = item, correct, response.p_true
        out_rt[step], out_day[step] = response_time, day
        day = day + (response_time + pause) / SECONDS_PER_DAY
        if progress is not None:
            progress(step + 1, steps)

    return PracticeRecord(item=out_item.T, correct=out_correct.T, p_true=out_p.T, response_time_s=out_rt.T,
                          day=out_day.T, practice_count=learners.practice_count(),
                          final_ability=learners.final_state(day))
