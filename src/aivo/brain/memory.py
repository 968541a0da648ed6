"""Forgetting, predicted: the FSRS memory model (Free Spaced Repetition Scheduler, version 6),
vectorized over (learner, skill) pairs.

The Main Brain reads the order of a learner's answers, not the time between them, so it cannot
say when a skill will be forgotten. The improved recommendation policy asks this model instead:
every answer on a skill is a review (right = "Good", wrong = "Again"); each (learner, skill) has
a memory stability S (days) and a difficulty D, and the probability of recall t days after the
last review is

    R(t) = (1 + F * t / S) ** -w20,   F = 0.9 ** (-1 / w20) - 1          (R = 0.9 when t = S)

S and D follow FSRS's update rules (initial stability by rating, recall and forget stability,
short-term stability for reviews on the same day, mean-reverting difficulty). The parameters are
FSRS 6's published defaults, fitted by its authors on millions of real reviews -- not on any
simulator here. Elapsed time counts in whole days, as the `fsrs` package does;
tests/brain/test_memory.py checks this against `fsrs` 6.3 (`Scheduler` without learning steps).
"""

from __future__ import annotations

import numpy as np

# fsrs 6.3.2 `DEFAULT_PARAMETERS` (w0 .. w20)
FSRS6_DEFAULT_PARAMETERS = (0.212, 1.2931, 2.3065, 8.2956, 6.4133, 0.8334, 3.0194, 0.001, 1.8722, 0.1666, 0.796,
                            1.4835, 0.0614, 0.2629, 1.6483, 0.6014, 1.8729, 0.5425, 0.0912, 0.0658, 0.1542)
STABILITY_MIN = 0.001
MIN_DIFFICULTY, MAX_DIFFICULTY = 1.0, 10.0
AGAIN, GOOD = 1, 3


class MemoryModel:
    """FSRS stability and difficulty of N learners x K skills (NaN: never reviewed)."""

    def __init__(self, num_learners: int, num_skills: int, parameters=FSRS6_DEFAULT_PARAMETERS):
        self.w = np.asarray(parameters, dtype=np.float64)
        if self.w.shape != (21,):
            raise ValueError(f"FSRS 6 has 21 parameters, got {self.w.shape[0]}")
        self.decay = -self.w[20]
        self.factor = 0.9 ** (1.0 / self.decay) - 1.0
        self.stability = np.full((num_learners, num_skills), np.nan)
        self.difficulty = np.full((num_learners, num_skills), np.nan)
        self.last_day = np.full((num_learners, num_skills), np.nan)

    def _elapsed(self, last: np.ndarray, day: np.ndarray) -> np.ndarray:
        return np.maximum(np.floor(day - last + 1e-9), 0.0)  # whole days, as fsrs counts them

    def _curve(self, elapsed: np.ndarray, stability: np.ndarray) -> np.ndarray:
        return (1.0 + self.factor * elapsed / stability) ** self.decay

    def retrievability(self, day: np.ndarray) -> np.ndarray:
        """(N, K) probability of recall at `day` (N,) of each skill; NaN where never reviewed."""
        return self._curve(self._elapsed(self.last_day, np.asarray(day, dtype=np.float64)[:, None]), self.stability)

    def _initial_difficulty(self, rating: np.ndarray) -> np.ndarray:
        return self.w[4] - np.exp(self.w[5] * (rating - 1)) + 1.0

    def review(self, rows: np.ndarray, skills: np.ndarray, correct: np.ndarray, day: np.ndarray) -> None:
        """Learner rows[i] answered skill skills[i] on day[i] (right: Good, wrong: Again). A pair
        appears at most once per call."""
        w = self.w
        rating = np.where(np.asarray(correct) == 1, GOOD, AGAIN).astype(np.float64)
        s, d, last = self.stability[rows, skills], self.difficulty[rows, skills], self.last_day[rows, skills]
        new = np.isnan(s)
        elapsed = self._elapsed(np.where(new, day, last), day)
        same_day = ~new & (elapsed < 1)
        safe_s = np.where(new, 1.0, s)
        r = self._curve(elapsed, safe_s)
        recall = safe_s * (1 + np.exp(w[8]) * (11 - np.where(new, 5.0, d)) * safe_s ** -w[9]
                           * (np.exp((1 - r) * w[10]) - 1))
        forget = np.minimum(w[11] * np.where(new, 5.0, d) ** -w[12] * ((safe_s + 1) ** w[13] - 1)
                            * np.exp((1 - r) * w[14]), safe_s / np.exp(w[17] * w[18]))
        short = np.exp(w[17] * (rating - 3 + w[18])) * safe_s ** -w[19]
        short = np.where(rating >= 2, np.maximum(short, 1.0), short) * safe_s
        initial = w[(rating - 1).astype(np.int64)]
        stability = np.where(new, initial, np.where(same_day, short, np.where(rating == AGAIN, forget, recall)))
        easy = self._initial_difficulty(np.full_like(rating, 4.0))
        damped = np.where(new, 5.0, d) + (10.0 - np.where(new, 5.0, d)) * (-(w[6] * (rating - 3))) / 9.0
        difficulty = np.where(new, self._initial_difficulty(rating), w[7] * easy + (1 - w[7]) * damped)
        self.stability[rows, skills] = np.maximum(stability, STABILITY_MIN)
        self.difficulty[rows, skills] = np.clip(difficulty, MIN_DIFFICULTY, MAX_DIFFICULTY)
        self.last_day[rows, skills] = day
