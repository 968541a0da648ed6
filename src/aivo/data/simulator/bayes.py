"""The Bayes-optimal history-based predictor of the simulator: the ceiling for any model.

The oracle (`oracle_metrics`) scores each answer with its true probability, which needs the
learner's hidden traits. A model sees only the learner's history. The best it can do is the
posterior predictive

    P(correct_t | history before t) = E[ p_true_t(traits) | history before t ],

the true probability averaged over every value of the hidden traits that fits the history. This
module computes it by sequential Monte Carlo over the traits of each learner (iterated batch
importance sampling, Chopin 2002), replaying the learner's observed items, answers, days and
(optionally) response times through the simulator's own equations (`dynamics.py`):

* each learner gets `particles` hypotheses drawn from the simulator's prior: general ability,
  the per-skill deviations, learning rate, forgetting time, speed and the per-item-type offsets
  (and the accommodation profile, unless it is taken from the log);
* before each answer, the prediction is the weighted mean of the hypotheses' true
  probabilities; after it, each weight is multiplied by the likelihood of the answer (and of
  its response time) and every hypothesis learns from the answer as the simulator does;
* when the effective sample size falls below `ess_threshold`, the hypotheses are resampled and
  moved by independent Metropolis-Hastings steps, with a Gaussian proposal fitted to them, that
  replay the whole history so far (the target is the exact posterior).

The item parameters and every population setting are known (they are the simulator's), so the
only uncertainty is the learner's own. With enough particles, the AUC of these predictions is
the best AUC a history-based model can expect on the same answers; what is left between it and
the oracle AUC cannot be closed by any model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from aivo.data.schema import InteractionLog
from aivo.data.simulator.cohort import SimulatedCohort
from aivo.data.simulator.curriculum import NO_SKILL
from aivo.data.simulator.dynamics import AbilityState, Tables
from aivo.errors import DataError

Progress = Callable[[int, int], None]  # (learners done, learners)
_LOG_2PI = math.log(2.0 * math.pi)
_EPS = 1e-12


@dataclass(frozen=True)
class BayesConfig:
    particles: int = 1000  # hypotheses per learner
    ess_threshold: float = 0.5  # resample and move when the effective sample size drops below this share
    move_steps: int = 2  # Metropolis-Hastings steps per move
    proposal_scale: float = 1.2  # the proposal's standard deviations, relative to the fitted ones
    use_response_times: bool = True  # response times also carry evidence about ability
    profile_from_log: bool = True  # read the accommodation profile from the log (else infer it)
    learners_per_chunk: int = 50  # learners filtered together (memory: chunk x particles x skills)

    def __post_init__(self) -> None:
        if self.particles < 2 or self.move_steps < 0 or self.learners_per_chunk < 1:
            raise DataError("BayesConfig: particles >= 2, move_steps >= 0 and learners_per_chunk >= 1 are needed")
        if not 0.0 < self.ess_threshold <= 1.0 or self.proposal_scale <= 0:
            raise DataError("BayesConfig: ess_threshold must be in (0, 1] and proposal_scale > 0")


@dataclass(frozen=True)
class BayesResult:
    p_correct: np.ndarray  # (rows,) posterior predictive, aligned with the log's rows
    moves: int  # resample-move events
    acceptance: float  # share of accepted Metropolis-Hastings proposals
    seconds: float


@dataclass
class _Observed:
    """A chunk of L learners padded to T steps."""

    item: np.ndarray  # (L, T) item index
    correct: np.ndarray  # (L, T) bool
    day: np.ndarray  # (L, T)
    log_rt: np.ndarray  # (L, T) log response time (NaN = unknown)
    valid: np.ndarray  # (L, T) bool
    grade_index: np.ndarray  # (L,)
    profile: np.ndarray  # (L,) profile index (-1 = unknown)


class _Prior:
    """Every continuous trait is a standard normal z; `state(z)` maps z to the simulator's scale.
    Columns of z: 0 general ability, 1 log learning rate, 2 log forgetting time, 3 speed,
    4 .. 4+T type offsets, then the K per-skill deviations."""

    GLOBAL = 4

    def __init__(self, cohort: SimulatedCohort):
        c, cur = cohort.config, cohort.curriculum
        self.config = c
        self.num_types = len(cur.item_types)
        self.num_skills = cur.num_skills
        self.dim = self.GLOBAL + self.num_types + self.num_skills
        self.skill_grade = cur.skills["grade"].to_numpy()
        self.grades = np.asarray(c.grades)
        rates = np.array(list(c.accommodation_rates.values()), dtype=np.float64)
        self.profile_rates = rates / rates.sum()

    @property
    def skill_offset(self) -> int:
        return self.GLOBAL + self.num_types

    def state(self, tables: Tables, z: np.ndarray, grade_index: np.ndarray) -> tuple[AbilityState, np.ndarray,
                                                                                         np.ndarray]:
        c = self.config
        general = c.ability_sd * z[:, 0]
        eta_sd, tau_sd = c.learning_rate_log_sd, c.forgetting_log_sd
        learning_rate = c.learning_rate * np.exp(-eta_sd ** 2 / 2 + eta_sd * z[:, 1])
        forgetting = c.forgetting_days * np.exp(-tau_sd ** 2 / 2 + tau_sd * z[:, 2])
        speed = c.speed_sd * z[:, 3]
        type_offset = c.personal_type_sd * z[:, self.GLOBAL:self.skill_offset]
        earlier = self.skill_grade[None, :] < self.grades[grade_index][:, None]
        initial = general[:, None] + c.skill_ability_sd * z[:, self.skill_offset:] + c.prior_grade_bonus * earlier
        state = AbilityState(tables, initial, learning_rate, forgetting, count_practice=False)
        return state, speed, type_offset


def _observations(cohort: SimulatedCohort, frame: pd.DataFrame) -> tuple[list[str], _Observed, np.ndarray]:
    cur, config = cohort.curriculum, cohort.config
    item_index = pd.Index(cur.items["item_id"].astype(str))
    items = item_index.get_indexer(frame["item_id"].astype(str))
    if (items < 0).any():
        raise DataError("the log has items that are not in the cohort's curriculum: it is not this cohort's log")
    learners = frame["learner_id"].astype(str).to_numpy()
    codes, uniques = pd.factorize(learners, sort=False)
    position = frame.groupby(codes, sort=False).cumcount().to_numpy()
    num, steps = len(uniques), int(position.max()) + 1
    start = pd.Timestamp(config.start_date, tz="UTC")
    day = ((frame["timestamp"] - start).dt.total_seconds() / 86_400.0).to_numpy(dtype=np.float64)
    obs = _Observed(item=np.zeros((num, steps), dtype=np.int64), correct=np.zeros((num, steps), dtype=bool),
                    day=np.zeros((num, steps)), log_rt=np.full((num, steps), np.nan),
                    valid=np.zeros((num, steps), dtype=bool), grade_index=np.zeros(num, dtype=np.int64),
                    profile=np.full(num, -1, dtype=np.int64))
    obs.item[codes, position] = items
    obs.correct[codes, position] = frame["correct"].to_numpy() == 1
    obs.day[codes, position] = day
    if "response_time_s" in frame.columns:
        obs.log_rt[codes, position] = np.log(frame["response_time_s"].to_numpy(dtype=np.float64))
    obs.valid[codes, position] = True
    grade_of = {g: i for i, g in enumerate(config.grades)}
    per_learner = frame.groupby(codes, sort=True).first()
    obs.grade_index[:] = [grade_of[int(g)] for g in per_learner["grade"]]
    if "accommodation" in frame.columns:
        profile_of = {p: i for i, p in enumerate(config.profiles)}
        obs.profile[:] = [profile_of.get(str(p), -1) for p in per_learner["accommodation"]]
    return list(uniques), obs, np.stack([codes, position], axis=1)


def _take(obs: _Observed, learners: np.ndarray) -> _Observed:
    return _Observed(**{f.name: getattr(obs, f.name)[learners] for f in fields(obs)})


def _evidence(state: AbilityState, obs: _Observed, owner: np.ndarray, profile: np.ndarray, speed: np.ndarray,
              type_offset: np.ndarray, t: int, *, response_time_sd: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Step t for every row (row i is a hypothesis about learner owner[i]): the rows' true
    probabilities and the log-likelihood of what was observed (the answer and, with
    `response_time_sd`, its response time); then every row learns from the observed answer."""
    item, day, correct = obs.item[owner, t], obs.day[owner, t], obs.correct[owner, t]
    attempt = state.attempt(item, day, profile, type_offset)
    p = np.clip(attempt.p_true, _EPS, 1.0 - _EPS)
    log_lik = np.where(correct, np.log(p), np.log1p(-p))
    if response_time_sd is not None:
        log_rt = obs.log_rt[owner, t]
        mean = state.log_response_time_mean(attempt, profile, speed)
        rt_term = -0.5 * ((log_rt - mean) / response_time_sd) ** 2 - math.log(response_time_sd) - 0.5 * _LOG_2PI
        log_lik = log_lik + np.where(np.isnan(log_rt), 0.0, rt_term)
    log_lik = np.where(obs.valid[owner, t], log_lik, 0.0)
    state.learn(attempt, correct, day)  # padding comes after a learner's last step: harmless
    return attempt.p_true, log_lik


def _check_model(cohort: SimulatedCohort) -> None:
    if cohort.learner_model != "simulator":
        raise DataError(f"the Bayes predictor models the project's simulator; this cohort was simulated with "
                        f"the {cohort.learner_model!r} learner model")


def replay_true_probabilities(cohort: SimulatedCohort, log: InteractionLog | None = None) -> np.ndarray:
    """Recompute p_true of every row of `log` from the cohort's hidden traits and the observed
    history alone. It equals the log's p_true (up to the timestamps' microsecond rounding) when
    the replay reproduces the simulator: the check that this module models what was simulated."""
    _check_model(cohort)
    log = cohort.log if log is None else log
    learner_ids, obs, where = _observations(cohort, log.frame)
    truth = cohort.learners.set_index(cohort.learners["learner_id"].astype(str))
    index = truth.index.get_indexer(learner_ids)
    if (index < 0).any():
        raise DataError("the log has learners that are not in the cohort")
    rows = truth.iloc[index]
    tables = Tables.build(cohort.config, cohort.curriculum)
    state = AbilityState(tables, cohort.initial_ability[index].copy(), rows["learning_rate"].to_numpy(),
                         rows["forgetting_days"].to_numpy(), count_practice=False)
    profile_of = {p: i for i, p in enumerate(cohort.config.profiles)}
    profile = np.array([profile_of[str(p)] for p in rows["accommodation"]])
    type_offset = rows[[f"type_offset_{t}" for t in cohort.curriculum.item_types["item_type"]]].to_numpy()
    owner = np.arange(len(index))
    out = np.full(obs.item.shape, np.nan)
    for t in range(obs.item.shape[1]):
        out[:, t], _ = _evidence(state, obs, owner, profile, rows["speed"].to_numpy(), type_offset, t,
                                 response_time_sd=None)
    return out[where[:, 0], where[:, 1]]


class _Filter:
    """SMC over one chunk of learners: rows are (learner, particle) pairs, learner-major."""

    def __init__(self, prior: _Prior, tables: Tables, obs: _Observed, config: BayesConfig, rng: np.random.Generator):
        self.prior, self.tables, self.obs, self.config, self.rng = prior, tables, obs, config, rng
        self.num_learners, self.num_steps = obs.item.shape
        self.p = config.particles
        self.owner = np.repeat(np.arange(self.num_learners), self.p)  # learner of each row
        rows = len(self.owner)
        self.z = rng.standard_normal((rows, prior.dim))
        known = obs.profile[self.owner] >= 0
        drawn = rng.choice(len(prior.profile_rates), size=rows, p=prior.profile_rates)
        self.profile = np.where(config.profile_from_log & known, obs.profile[self.owner], drawn)
        self.infer_profile = not (config.profile_from_log and (obs.profile >= 0).all())
        self.state, self.speed, self.type_offset = prior.state(tables, self.z, obs.grade_index[self.owner])
        self.log_weight = np.zeros(rows)
        self.log_lik = np.zeros(rows)
        self.relevant = np.zeros((self.num_learners, prior.num_skills), dtype=bool)
        self.moves = 0
        self.proposed = 0
        self.accepted = 0

    def _step(self, state: AbilityState, owner: np.ndarray, profile: np.ndarray, speed: np.ndarray,
              type_offset: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        sd = self.prior.config.response_time_sd if self.config.use_response_times else None
        return _evidence(state, self.obs, owner, profile, speed, type_offset, t, response_time_sd=sd)

    def run(self) -> np.ndarray:
        """(L, T) posterior predictive P(correct) of every step."""
        out = np.full((self.num_learners, self.num_steps), np.nan)
        for t in range(self.num_steps):
            self._mark_relevant(t)
            p, log_lik = self._step(self.state, self.owner, self.profile, self.speed, self.type_offset, t)
            w = self._normalized()
            out[:, t] = (w * p.reshape(self.num_learners, self.p)).sum(axis=1)
            self.log_weight += log_lik
            self.log_lik += log_lik
            ess = 1.0 / (self._normalized() ** 2).sum(axis=1)
            low = np.flatnonzero((ess < self.config.ess_threshold * self.p) & self.obs.valid[:, t])
            if len(low) and t + 1 < self.num_steps:
                self._resample_move(low, t)
        return out

    def _normalized(self) -> np.ndarray:
        lw = self.log_weight.reshape(self.num_learners, self.p)
        w = np.exp(lw - lw.max(axis=1, keepdims=True))
        return w / w.sum(axis=1, keepdims=True)

    def _mark_relevant(self, t: int) -> None:
        """Skills whose deviation the history so far depends on: the items' skills and their
        prerequisites (their mastery scales what a learner gains)."""
        skills = self.tables.item_skills[self.obs.item[:, t]]  # (L, 2)
        pre = self.tables.prerequisites[np.where(skills == NO_SKILL, 0, skills)]  # (L, 2, 2)
        learners = np.arange(self.num_learners)
        for k in (*skills.T, *pre.reshape(self.num_learners, -1).T):
            ok = (k != NO_SKILL) & self.obs.valid[:, t]
            self.relevant[learners[ok], k[ok]] = True

    # -- resample and move --------------------------------------------------------------------
    def _rows_of(self, learners: np.ndarray) -> np.ndarray:
        return (learners[:, None] * self.p + np.arange(self.p)[None, :]).ravel()

    def _resample_move(self, learners: np.ndarray, t: int) -> None:
        self.moves += len(learners)
        w = self._normalized()[learners]  # (n, P)
        # Systematic resampling, per learner.
        u = (self.rng.random((len(learners), 1)) + np.arange(self.p)[None, :]) / self.p
        picks = np.minimum(np.array([np.searchsorted(np.cumsum(wl), ul) for wl, ul in zip(w, u)]), self.p - 1)
        rows = self._rows_of(learners)
        source = (learners[:, None] * self.p + picks).ravel()
        self._assign(rows, source, self.state, self.z, self.profile, self.log_lik, self.speed, self.type_offset)
        self.log_weight[rows] = 0.0
        for _ in range(self.config.move_steps):
            self._metropolis(learners, rows, t)

    def _assign(self, rows: np.ndarray, source: np.ndarray, state: AbilityState, z: np.ndarray,
                profile: np.ndarray, log_lik: np.ndarray, speed: np.ndarray, type_offset: np.ndarray) -> None:
        """Particles `rows` become the hypotheses at index `source` of the given arrays (resampling:
        this filter's own; a Metropolis-Hastings step: the accepted proposals)."""
        self.state.assign_rows(rows, state, source)
        for mine, theirs in ((self.z, z), (self.profile, profile), (self.log_lik, log_lik), (self.speed, speed),
                             (self.type_offset, type_offset)):
            mine[rows] = theirs[source]

    def _metropolis(self, learners: np.ndarray, rows: np.ndarray, t: int) -> None:
        """One independent Metropolis-Hastings step for every row of `learners`: propose the
        relevant coordinates from a Gaussian fitted to the learner's particles, replay the
        history up to t with the proposal, accept with the usual ratio."""
        prior, p = self.prior, self.p
        z_new = self.z[rows]  # fancy indexing: a copy
        log_q_old, log_q_new = np.zeros(len(rows)), np.zeros(len(rows))
        log_prior_old, log_prior_new = np.zeros(len(rows)), np.zeros(len(rows))
        for i, learner in enumerate(learners):
            block = slice(i * p, (i + 1) * p)
            cols = np.concatenate([np.arange(prior.skill_offset),
                                   prior.skill_offset + np.flatnonzero(self.relevant[learner])])
            current = self.z[rows[block]][:, cols]
            mean = current.mean(axis=0)
            cov = np.cov(current, rowvar=False) * self.config.proposal_scale ** 2 + 1e-6 * np.eye(len(cols))
            chol = np.linalg.cholesky(cov)
            draws = mean + self.rng.standard_normal((p, len(cols))) @ chol.T
            z_new[block][:, cols] = draws  # a view of z_new: assigns in place
            for values, target in ((current, log_q_old), (draws, log_q_new)):
                white = np.linalg.solve(chol, (values - mean).T)
                target[block] = -0.5 * (white ** 2).sum(axis=0)
            log_prior_old[block] = -0.5 * (current ** 2).sum(axis=1)
            log_prior_new[block] = -0.5 * (draws ** 2).sum(axis=1)
        profile_new = self.profile[rows]
        log_q_profile_old = log_q_profile_new = 0.0
        if self.infer_profile:
            profile_new, log_q_profile_old, log_q_profile_new = self._propose_profile(learners, rows)
            rates = np.log(prior.profile_rates)
            log_prior_old = log_prior_old + rates[self.profile[rows]]
            log_prior_new = log_prior_new + rates[profile_new]
        owner = self.owner[rows]
        state, speed, type_offset = prior.state(self.tables, z_new, self.obs.grade_index[owner])
        log_lik_new = np.zeros(len(rows))
        for step in range(t + 1):
            _, ll = self._step(state, owner, profile_new, speed, type_offset, step)
            log_lik_new += ll
        log_alpha = ((log_prior_new + log_lik_new - log_q_new - log_q_profile_new)
                     - (log_prior_old + self.log_lik[rows] - log_q_old - log_q_profile_old))
        accept = np.log(self.rng.random(len(rows))) < log_alpha
        self.proposed += len(rows)
        self.accepted += int(accept.sum())
        self._assign(rows[accept], np.flatnonzero(accept), state, z_new, profile_new, log_lik_new, speed, type_offset)

    def _propose_profile(self, learners: np.ndarray, rows: np.ndarray):
        """Profiles drawn from the particles' own (smoothed) frequencies, per learner."""
        num = len(self.prior.profile_rates)
        current = self.profile[rows].reshape(len(learners), self.p)
        freq = np.stack([np.bincount(c, minlength=num) for c in current]).astype(np.float64) + 1.0
        freq /= freq.sum(axis=1, keepdims=True)
        cumulative = np.cumsum(freq, axis=1)
        draws = (self.rng.random((len(learners), self.p, 1)) > cumulative[:, None, :]).sum(axis=2)
        draws = np.minimum(draws, num - 1)
        if self.config.profile_from_log:  # a profile the log gives stays fixed
            draws = np.where((self.obs.profile[learners] >= 0)[:, None], current, draws)
        index = np.arange(len(learners))[:, None]
        log_old = np.log(freq[index, current]).ravel()
        log_new = np.log(freq[index, draws]).ravel()
        return draws.ravel(), log_old, log_new


def bayes_predictions(cohort: SimulatedCohort, log: InteractionLog | None = None, *,
                      config: BayesConfig | None = None, seed: int = 0,
                      progress: Progress | None = None) -> BayesResult:
    """Posterior-predictive P(correct) of every row of `log` (default: the whole cohort) from
    the answers before it in the learner's history (see the module docstring)."""
    _check_model(cohort)
    config = config or BayesConfig()
    log = cohort.log if log is None else log
    frame = log.frame
    if frame.empty:
        raise DataError("the log is empty: nothing to predict")
    began = time.perf_counter()
    prior, tables = _Prior(cohort), Tables.build(cohort.config, cohort.curriculum)
    _, obs, where = _observations(cohort, frame)
    out = np.full(obs.item.shape, np.nan)
    rng = np.random.default_rng(seed)
    num = obs.item.shape[0]
    moves = proposed = accepted = 0
    for start in range(0, num, config.learners_per_chunk):
        learners = np.arange(start, min(num, start + config.learners_per_chunk))
        filt = _Filter(prior, tables, _take(obs, learners), config, rng)
        out[learners] = filt.run()
        moves, proposed, accepted = moves + filt.moves, proposed + filt.proposed, accepted + filt.accepted
        if progress is not None:
            progress(int(learners[-1]) + 1, num)
    return BayesResult(p_correct=out[where[:, 0], where[:, 1]], moves=moves,
                       acceptance=accepted / proposed if proposed else float("nan"),
                       seconds=time.perf_counter() - began)
