"""Standard Bayesian knowledge tracing (Corbett & Anderson 1995), one model per skill, fitted by
expectation-maximization: the mastery-learning baseline of the policy evaluation.

Per skill four parameters: prior P(L0), learn P(T), guess P(G), slip P(S); no forgetting. Each
learner's attempts on a skill form one sequence (an attempt at a multi-skill item counts for each
of its skills, as pyBKT does). EM runs on every skill at once: forward-backward over all
(learner, skill) sequences, vectorized over sequences, looping over positions only.

`pybkt` 1.4.3 (the reference implementation) does not import with numpy 2 and current
scikit-learn, so this is written here and checked against it: `benchmarks/bkt_validation.py`
fits both on the same data set and compares parameters and test AUC (docs/brain.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aivo.data.schema import split_skills
from aivo.errors import DataError

_EPS = 1e-9


@dataclass(frozen=True)
class BKTFitConfig:
    num_restarts: int = 3  # random initializations per skill; the best log-likelihood is kept
    max_iterations: int = 100
    tolerance: float = 1e-4  # stop when no skill's log-likelihood per attempt improves by more
    max_guess: float = 0.5  # bounds that keep "known" meaning "more likely right" (0.5: pyBKT-like)
    max_slip: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_restarts < 1 or self.max_iterations < 1 or self.tolerance <= 0:
            raise ValueError("BKTFitConfig: num_restarts and max_iterations >= 1, tolerance > 0 are needed")
        if not 0 < self.max_guess <= 1 or not 0 < self.max_slip <= 1:
            raise ValueError("BKTFitConfig: max_guess and max_slip must be in (0, 1]")


@dataclass(frozen=True)
class BKTParams:
    """Per-skill parameters, aligned arrays (K,)."""

    skills: tuple[str, ...]
    prior: np.ndarray
    learn: np.ndarray
    guess: np.ndarray
    slip: np.ndarray
    num_attempts: np.ndarray  # attempts each skill was fitted on

    def to_dict(self) -> dict:
        return {"skills": list(self.skills),
                **{name: [round(float(v), 6) for v in getattr(self, name)]
                   for name in ("prior", "learn", "guess", "slip")},
                "num_attempts": [int(v) for v in self.num_attempts]}

    @classmethod
    def from_dict(cls, values: dict) -> "BKTParams":
        try:
            return cls(skills=tuple(str(s) for s in values["skills"]),
                       **{name: np.asarray(values[name], dtype=np.float64) for name in ("prior", "learn", "guess",
                                                                                         "slip")},
                       num_attempts=np.asarray(values["num_attempts"], dtype=np.int64))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed BKT parameters: {exc}") from None

    def index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.skills)}


@dataclass
class _Sequences:
    """(Q, T) answers of Q (learner, skill) sequences padded to T, longest first (so the
    sequences still running at step t are a prefix); skill index per sequence."""

    answers: np.ndarray  # (Q, T) float 0/1
    valid: np.ndarray  # (Q, T) bool
    skill: np.ndarray  # (Q,)
    running: np.ndarray  # (T,) sequences with a step t (a prefix of the rows)


def _skill_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (attempt, skill) in learner/order order: learner_id, skill, correct."""
    skills = (frame["skill_ids"] if "skill_ids" in frame.columns else frame["item_id"]).astype(str)
    lists = [split_skills(s) or [s] for s in skills]
    repeat = np.array([len(x) for x in lists])
    return pd.DataFrame({"learner_id": np.repeat(frame["learner_id"].astype(str).to_numpy(), repeat),
                         "skill": np.concatenate([np.array(x, dtype=object) for x in lists]) if len(lists) else [],
                         "correct": np.repeat(frame["correct"].to_numpy(dtype=np.float64), repeat)})


def _sequences(rows: pd.DataFrame, skills: list[str]) -> _Sequences:
    index = pd.Index(skills)
    key = rows["learner_id"] + "\x1f" + rows["skill"].astype(str)
    codes, _ = pd.factorize(key, sort=False)
    position = pd.Series(codes).groupby(codes).cumcount().to_numpy()
    num, width = int(codes.max()) + 1, int(position.max()) + 1
    answers, valid = np.zeros((num, width)), np.zeros((num, width), dtype=bool)
    answers[codes, position] = rows["correct"].to_numpy()
    valid[codes, position] = True
    first = pd.Series(np.arange(len(codes))).groupby(codes).first().to_numpy()
    skill = index.get_indexer(rows["skill"].to_numpy()[first])
    order = np.argsort(-valid.sum(axis=1), kind="stable")
    answers, valid, skill = answers[order], valid[order], skill[order]
    return _Sequences(answers=answers, valid=valid, skill=skill, running=valid.sum(axis=0))


def _forward_backward(seq: _Sequences, prior: np.ndarray, learn: np.ndarray, guess: np.ndarray,
                      slip: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parameters per sequence (Q,). Returns gamma (Q, T) = P(known_t | all answers), xi (Q, T) =
    expected unknown_t -> known_t+1 transitions, and each sequence's log-likelihood (Q,). Steps
    after a sequence's end are never computed (they would emit with probability 1)."""
    q, t = seq.answers.shape
    right = seq.answers == 1
    emit_known = np.where(right, 1 - slip[:, None], slip[:, None])
    emit_unknown = np.where(right, guess[:, None], 1 - guess[:, None])
    alpha = np.zeros((q, t))  # P(known_t | answers up to t)
    loglik = np.zeros(q)
    known = prior.copy()  # P(known_t | answers before t)
    for step in range(t):
        n = seq.running[step]
        k = known[:n]
        a_known, a_unknown = k * emit_known[:n, step], (1 - k) * emit_unknown[:n, step]
        total = np.maximum(a_known + a_unknown, _EPS)
        loglik[:n] += np.log(total)
        alpha[:n, step] = a_known / total
        known[:n] = alpha[:n, step] + (1 - alpha[:n, step]) * learn[:n]
    gamma, xi = alpha.copy(), np.zeros((q, t))  # a sequence's last step: gamma = alpha
    beta_known, beta_unknown = np.ones(q), np.ones(q)  # P(answers after step | state), rescaled
    for step in range(t - 2, -1, -1):
        n = seq.running[step + 1]  # sequences that go on after this step
        a, lr = alpha[:n, step], learn[:n]
        e_known, e_unknown = emit_known[:n, step + 1], emit_unknown[:n, step + 1]
        b_known, b_unknown = beta_known[:n], beta_unknown[:n]
        stay_known = a * e_known * b_known
        learned = (1 - a) * lr * e_known * b_known
        stay_unknown = (1 - a) * (1 - lr) * e_unknown * b_unknown
        xi[:n, step] = learned / np.maximum(stay_known + learned + stay_unknown, _EPS)
        new_known = e_known * b_known
        new_unknown = lr * e_known * b_known + (1 - lr) * e_unknown * b_unknown
        norm = np.maximum(np.maximum(new_known, new_unknown), _EPS)
        beta_known[:n], beta_unknown[:n] = new_known / norm, new_unknown / norm
        g_known, g_unknown = a * beta_known[:n], (1 - a) * beta_unknown[:n]
        gamma[:n, step] = g_known / np.maximum(g_known + g_unknown, _EPS)
    return gamma, xi, loglik


def _m_step(seq: _Sequences, gamma: np.ndarray, xi: np.ndarray, num_skills: int,
            config: BKTFitConfig) -> tuple[np.ndarray, ...]:
    def per_skill(values: np.ndarray) -> np.ndarray:
        return np.bincount(seq.skill, weights=values, minlength=num_skills)

    valid, right = seq.valid, seq.answers == 1
    has_next = np.zeros_like(valid)
    has_next[:, :-1] = valid[:, 1:]
    unknown = 1 - gamma
    prior = per_skill(gamma[:, 0]) / np.maximum(per_skill(np.ones(len(seq.skill))), _EPS)
    learn = per_skill(xi.sum(axis=1)) / np.maximum(per_skill((unknown * has_next).sum(axis=1)), _EPS)
    guess = per_skill((unknown * (valid & right)).sum(axis=1)) / np.maximum(per_skill((unknown * valid).sum(axis=1)),
                                                                             _EPS)
    slip = per_skill((gamma * (valid & ~right)).sum(axis=1)) / np.maximum(per_skill((gamma * valid).sum(axis=1)),
                                                                          _EPS)
    lo = 1e-4
    return (np.clip(prior, lo, 1 - lo), np.clip(learn, lo, 1 - lo), np.clip(guess, lo, config.max_guess),
            np.clip(slip, lo, config.max_slip))


def fit_bkt(frame: pd.DataFrame, *, config: BKTFitConfig = BKTFitConfig()) -> BKTParams:
    """Fit one BKT model per skill on an interaction frame (learner_id, item_id, correct, order;
    skill_ids optional: the item is the skill without it), rows in (learner, order) order."""
    if frame.empty:
        raise DataError("cannot fit BKT on an empty log")
    frame = frame.sort_values(["learner_id", "order"], kind="stable") if "order" in frame.columns else frame
    rows = _skill_rows(frame)
    skills = sorted(rows["skill"].astype(str).unique())
    seq = _sequences(rows, skills)
    k = len(skills)
    attempts = np.bincount(seq.skill, weights=seq.valid.sum(axis=1), minlength=k)
    rng = np.random.default_rng(config.seed)
    best_loglik = np.full(k, -np.inf)
    best = [np.zeros(k) for _ in range(4)]
    for _ in range(config.num_restarts):
        params = [rng.uniform(0.1, 0.9, k), rng.uniform(0.05, 0.5, k),
                  rng.uniform(0.05, min(0.4, config.max_guess), k), rng.uniform(0.05, min(0.3, config.max_slip), k)]
        previous = np.full(k, -np.inf)
        for _ in range(config.max_iterations):
            gamma, xi, loglik = _forward_backward(seq, *(p[seq.skill] for p in params))
            per_skill = np.bincount(seq.skill, weights=loglik, minlength=k)
            improvement = (per_skill - previous) / np.maximum(attempts, 1)
            previous = per_skill
            params = list(_m_step(seq, gamma, xi, k, config))
            if np.all(improvement < config.tolerance):
                break
        _, _, loglik = _forward_backward(seq, *(p[seq.skill] for p in params))
        final = np.bincount(seq.skill, weights=loglik, minlength=k)
        better = final > best_loglik
        best_loglik = np.where(better, final, best_loglik)
        best = [np.where(better, new, old) for new, old in zip(params, best)]
    return BKTParams(skills=tuple(skills), prior=best[0], learn=best[1], guess=best[2], slip=best[3],
                     num_attempts=attempts.astype(np.int64))


def _filter(params: BKTParams, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Forward pass over (attempt, skill) rows in learner/order order, vectorized over the
    (learner, skill) sequences. Per row: P(correct) before the answer, and P(known) after it
    (posterior given the answer, then one learning step). NaN for skills without parameters."""
    skill = pd.Index(list(params.skills)).get_indexer(rows["skill"].astype(str).to_numpy())
    if len(rows) == 0:
        return np.zeros(0), np.zeros(0)
    key = rows["learner_id"].astype(str) + "\x1f" + rows["skill"].astype(str)
    codes, _ = pd.factorize(key, sort=False)
    position = pd.Series(codes).groupby(codes).cumcount().to_numpy()
    num, width = int(codes.max()) + 1, int(position.max()) + 1
    answers = np.zeros((num, width))
    answers[codes, position] = rows["correct"].to_numpy(dtype=np.float64)
    seq_skill = np.zeros(num, dtype=np.int64)
    seq_skill[codes] = np.where(skill >= 0, skill, 0)
    prior, learn, guess, slip = (getattr(params, n)[seq_skill] for n in ("prior", "learn", "guess", "slip"))
    p_correct, after = np.zeros((num, width)), np.zeros((num, width))
    known = prior.copy()
    for step in range(width):  # padded steps are computed and never read
        p = known * (1 - slip) + (1 - known) * guess
        right = answers[:, step] == 1
        post = np.where(right, known * (1 - slip) / np.maximum(p, _EPS), known * slip / np.maximum(1 - p, _EPS))
        known = post + (1 - post) * learn
        p_correct[:, step], after[:, step] = p, known
    missing = np.where(skill >= 0, 1.0, np.nan)
    return p_correct[codes, position] * missing, after[codes, position] * missing


def predict_bkt(params: BKTParams, frame: pd.DataFrame) -> np.ndarray:
    """(N,) P(correct) of each row from the learner's earlier rows (mean over an item's skills;
    NaN where no skill has parameters). Rows in (learner, order) order."""
    rows = _skill_rows(frame)
    p_correct, _ = _filter(params, rows)
    owner = np.repeat(np.arange(len(frame)), [len(split_skills(s) or [s]) for s in
                                              (frame["skill_ids"] if "skill_ids" in frame.columns
                                               else frame["item_id"]).astype(str)])
    return pd.Series(p_correct).groupby(owner).mean().reindex(range(len(frame))).to_numpy()


def knowledge_after(params: BKTParams, frame: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(learner_id, skill) -> P(known) after the learner's last attempt on the skill (posterior
    given the answer, then one learning step): the mastery-learning criterion."""
    rows = _skill_rows(frame)
    _, after = _filter(params, rows)
    last = pd.DataFrame({"learner_id": rows["learner_id"], "skill": rows["skill"].astype(str), "after": after})
    last = last.dropna().groupby(["learner_id", "skill"], sort=False)["after"].last()
    return {key: float(v) for key, v in last.items()}
