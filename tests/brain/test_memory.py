"""The vectorized FSRS memory model equals the `fsrs` package (6.x) on random review histories."""

from datetime import datetime, timedelta, timezone

import fsrs  # a dev dependency: the reference implementation
import numpy as np
import pytest

from aivo.brain.memory import FSRS6_DEFAULT_PARAMETERS, MemoryModel


def test_stability_difficulty_and_recall_match_the_fsrs_package():
    scheduler = fsrs.Scheduler(parameters=FSRS6_DEFAULT_PARAMETERS, learning_steps=(), relearning_steps=(),
                               enable_fuzzing=False)
    assert tuple(scheduler.parameters) == pytest.approx(tuple(fsrs.scheduler.DEFAULT_PARAMETERS))
    rng = np.random.default_rng(0)
    n = 40
    model = MemoryModel(n, 1)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    cards = [fsrs.Card() for _ in range(n)]
    day = np.zeros(n)
    for step in range(25):
        day = day + rng.choice([0.01, 0.3, 1.2, 3.0, 9.5], size=n)  # same-day and later reviews
        correct = (rng.random(n) < 0.7).astype(int)
        model.review(np.arange(n), np.zeros(n, dtype=np.int64), correct, day)
        for i in range(n):
            when = start + timedelta(days=float(day[i]))
            rating = fsrs.Rating.Good if correct[i] else fsrs.Rating.Again
            cards[i], _ = scheduler.review_card(cards[i], rating, review_datetime=when)
        assert model.stability[:, 0] == pytest.approx([c.stability for c in cards], rel=1e-6)
        assert model.difficulty[:, 0] == pytest.approx([c.difficulty for c in cards], rel=1e-6)
    later = day + 4.5
    ours = model.retrievability(later)[:, 0]
    theirs = [scheduler.get_card_retrievability(c, current_datetime=start + timedelta(days=float(t)))
              for c, t in zip(cards, later)]
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_never_reviewed_skills_have_no_recall_estimate():
    model = MemoryModel(2, 3)
    model.review(np.array([0]), np.array([1]), np.array([1]), np.array([0.5]))
    r = model.retrievability(np.array([3.0, 3.0]))
    assert np.isnan(r[0, 0]) and np.isnan(r[1]).all() and 0 < r[0, 1] < 1
