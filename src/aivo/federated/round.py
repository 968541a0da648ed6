"""One federated round through the registry, as its steps over one `RoundPlan`:

    plan = plan_round(registry=..., options=..., actor=...)   # main version, strategy, privacy plan
    select(plan, registry=...)       # eligible -> pool (same version, with an update, within budget) -> sample
    aggregate(plan, registry=...)    # stream the sampled updates through the (DP-wrapped) strategy
    gate(plan, registry=...)         # candidate = main + server step; scored before/after on held-out rows
    commit(plan, registry=...)       # one transaction: version, federated update, ledgers, audit

1. The privacy plan (the accountant's warnings) exists before anything runs.
2. The pool: learners whose latest training is recent, not yet aggregated, built against the
   active main version, with an update, and (under DP) whose epsilon after this round stays
   within the budget. Fewer than `min_learners`: the round stops there.
3. The pool is Poisson-sampled (rate q); the sampled updates stream from the artifact store
   through the strategy (wrapped in user-level DP when enabled); bad updates are rejected with
   their reason.
4. The gate scores the main version and the candidate on held-out interactions.
5. Unless dry run, one transaction registers and promotes the candidate if it passes, records
   the federated update (metrics, privacy figures, contributions, rejections), charges every
   pooled learner's privacy ledger and writes the audit entry. A round whose updates were all
   rejected is committed too (no candidate), so its sessions are not offered again.

`aivo.services.aggregation.run_aggregation` runs the steps and reports on the plan.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
import torch

from aivo.brain.bundle import TrainedBrain
from aivo.brain.checkpoint import to_state
from aivo.brain.versions import LoadedBrain, architecture_of, load_main_brain
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import ConfigError, ConflictError
from aivo.federated.aggregate import AggregationOutcome, aggregate_updates
from aivo.federated.dp import PrivateStrategy, UserLevelDP, poisson_sample
from aivo.federated.gate import GateData, GateDecision, decide, load_gate_data, score
from aivo.federated.strategies import Strategy, make_strategy
from aivo.federated.updates import RejectedUpdate, UpdateSpec, stream_updates
from aivo.personalization.parts import partition_parameters
from aivo.privacy.ledger import charge_round, get_ledgers, split_by_budget
from aivo.privacy.planning import PrivacyPlan, plan_privacy
from aivo.registry import (
    EligibleLearner,
    Registry,
    get_active_main_version,
    get_eligible_for_aggregation,
    next_main_version_name,
    promote_main_version,
    record_federated_update,
    register_main_version,
    write_audit,
)
from aivo.registry.tables import FederatedUpdate, TrainingSession

KIND = "brain"  # the learner-model kind whose updates are aggregated
NO_HELD_OUT = "no held-out interactions to evaluate on"


def round_settings(settings: Settings) -> dict[str, Any]:
    """The AIVO_* settings every round of aggregation takes, by option name: strategy, DP, gate
    and which layers are shared. An embedded round (`AggregationOptions.from_settings`) and a
    round across sites (`aivo.services.federation.options_from_settings`) both start from them."""
    return dict(
        strategy=settings.aggregation_strategy, server_learning_rate=settings.server_learning_rate,
        dp_enabled=settings.enable_differential_privacy, noise_multiplier=settings.noise_multiplier,
        clip_norm=settings.clip_norm, sample_rate=settings.sampling_rate, delta=settings.delta,
        epsilon_budget=settings.epsilon_budget, accountant=settings.accountant, weight_cap=settings.dp_weight_cap,
        reservoir_size=settings.reservoir_size, gate_margin=settings.gate_margin,
        holdout_fraction=settings.holdout_fraction, freeze_layers=settings.freeze_layers)


@dataclass(frozen=True)
class AggregationOptions:
    strategy: str = "fedavg"
    min_learners: int = 5
    max_stale_days: float = 7.0
    server_learning_rate: float = 1.0
    dp_enabled: bool = True
    noise_multiplier: float = 1.0
    clip_norm: float = 1.0
    sample_rate: float = 1.0
    delta: float = 1e-5
    epsilon_budget: float = 8.0
    accountant: str = "rdp"
    weight_cap: float | None = None  # DP weight cap (None: the strategy's default)
    trim_fraction: float | None = None  # trimmed-mean
    reservoir_size: int | None = None  # median / trimmed-mean
    proximal_mu: float | None = None  # fedprox (what local training used)
    score_metric: str | None = None  # weighted
    gate_margin: float = 0.0
    gate_max_learners: int = 1000
    holdout_fraction: float = 0.2
    freeze_layers: str = "encoder"  # must match the clones' (AIVO_FREEZE_LAYERS)
    dry_run: bool = False
    # None: fresh OS entropy (required for real privacy: whoever knows the seed can remove the noise).
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.min_learners < 1:
            raise ConfigError(f"min_learners must be >= 1, got {self.min_learners}")
        if self.max_stale_days < 0:
            raise ConfigError(f"max_stale_days must be >= 0, got {self.max_stale_days}")
        if not self.server_learning_rate > 0:
            raise ConfigError(f"the server learning rate must be > 0, got {self.server_learning_rate}")
        if self.gate_margin < 0:
            raise ConfigError(f"gate_margin must be >= 0, got {self.gate_margin}")
        if not 0.0 < self.delta < 1.0:
            raise ConfigError(f"delta must be in (0, 1), typically below 1 / number of learners, got {self.delta}")
        if not self.epsilon_budget > 0 or not math.isfinite(self.epsilon_budget):
            raise ConfigError(f"the epsilon budget must be a positive number, got {self.epsilon_budget}")
        if self.seed is not None and self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.gate_max_learners < 1:
            raise ConfigError(f"gate_max_learners must be >= 1, got {self.gate_max_learners}")
        self.make_strategy()  # validates the strategy name and its options
        self.user_level_dp()

    def make_strategy(self) -> Strategy:
        # The reservoir size has a service-wide default (AIVO_RESERVOIR_SIZE), given only to the
        # strategies that take one; any other option a user passes is an error for a strategy
        # that does not take it.
        return make_strategy(self.strategy, trim_fraction=self.trim_fraction, proximal_mu=self.proximal_mu,
                             score_metric=self.score_metric, defaults={"reservoir_size": self.reservoir_size})

    def user_level_dp(self) -> UserLevelDP:
        return UserLevelDP(noise_multiplier=self.noise_multiplier, clip_norm=self.clip_norm,
                           sample_rate=self.sample_rate, weight_cap=self.weight_cap)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "AggregationOptions":
        values: dict[str, Any] = dict(
            round_settings(settings), min_learners=settings.min_learners, max_stale_days=settings.max_stale_days,
            gate_max_learners=settings.gate_max_learners)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def plan(self, *, num_learners: int | None = None) -> PrivacyPlan:
        return plan_privacy(enabled=self.dp_enabled, noise_multiplier=self.noise_multiplier,
                            sample_rate=self.sample_rate, clip_norm=self.clip_norm, delta=self.delta,
                            epsilon_budget=self.epsilon_budget, accountant=self.accountant, num_learners=num_learners)


@dataclass
class RoundPlan:
    """What one round decides, filled in by its steps (each step reads what the previous ones
    wrote). Learner lists hold pseudonyms."""

    options: AggregationOptions
    actor: str
    clock: Clock
    main: LoadedBrain  # the active version: the round's starting point
    strategy: Strategy
    spec: UpdateSpec  # what every update must look like
    # select
    eligible: list[EligibleLearner] = field(default_factory=list)
    privacy: PrivacyPlan | None = None  # the accountant's plan for the eligible learners
    stale: list[EligibleLearner] = field(default_factory=list)  # built against another version
    no_update: list[EligibleLearner] = field(default_factory=list)
    candidates: dict[str, EligibleLearner] = field(default_factory=dict)  # right version, with an update
    over_budget: list[str] = field(default_factory=list)
    projected_epsilon: dict[str, float] = field(default_factory=dict)  # pooled learner -> after this round
    pool: list[str] = field(default_factory=list)
    sampled: list[str] = field(default_factory=list)
    generator: np.random.Generator | None = None  # sampling and noise share it
    # aggregate
    private: PrivateStrategy | None = None  # the strategy wrapped in user-level DP (when enabled)
    outcome: AggregationOutcome | None = None
    rejected: list[RejectedUpdate] = field(default_factory=list)  # unreadable or refused sampled updates
    # gate
    candidate: TrainedBrain | None = None
    metrics_before: dict = field(default_factory=dict)
    metrics_after: dict = field(default_factory=dict)
    decision: GateDecision | None = None
    # commit
    version_after: str | None = None
    federated_update_id: int | None = None
    erased_during_round: int | None = None  # pooled (or sampled) learners erased while the round ran

    @property
    def version(self) -> str:
        return self.main.version.version

    @property
    def enough_learners(self) -> bool:
        return len(self.pool) >= self.options.min_learners

    @property
    def aggregated(self) -> bool:
        return self.outcome is not None and self.outcome.delta is not None

    @property
    def passes(self) -> bool:
        return self.decision is not None and self.decision.passes

    @property
    def gate_reason(self) -> str | None:
        return None if self.decision is None else self.decision.reason

    @property
    def promoted(self) -> bool:
        return self.version_after is not None

    def rejections(self) -> list[RejectedUpdate]:
        """Every rejection with its reason: other-version updates first, then the sampled ones."""
        stale = [RejectedUpdate(e.learner_id, e.training_session_id,
                                f"built against main version {e.main_version!r}, not {self.version!r}")
                 for e in self.stale]
        return stale + self.rejected

    def counts(self) -> dict[str, int]:
        counts = {"eligible": len(self.eligible), "stale_version": len(self.stale), "no_update": len(self.no_update),
                  "over_budget": len(self.over_budget), "pool": len(self.pool)}
        if self.outcome is not None:
            counts.update(sampled=len(self.sampled), accepted=self.outcome.num_accepted, rejected=len(self.rejected))
        if self.erased_during_round is not None:
            counts["erased_during_round"] = self.erased_during_round
        return counts

    def privacy_figures(self) -> dict[str, Any]:
        figures = self.privacy.to_dict() if self.privacy is not None else {}
        if self.projected_epsilon:
            values = np.array(list(self.projected_epsilon.values()))
            figures.update(epsilon_after_round_max=float(values.max()),
                           epsilon_after_round_median=float(np.median(values)))
        if self.outcome is not None:
            expected = self.options.sample_rate * len(self.pool)
            figures.update(sampled=len(self.sampled), pool=len(self.pool), expected_participants=expected)
            if self.private is not None:
                figures.update(noise_std_of_sum=self.private.noise_std, weight_cap=self.private.weight_cap,
                               denominator=self.private.expected_participants)
        return figures

    def aggregation_summary(self) -> dict[str, Any]:
        if self.outcome is None:
            return {}
        return {**self.outcome.summary(), "strategy": self.strategy.describe(), "dp": self.options.dp_enabled,
                "expected_participants": self.options.sample_rate * len(self.pool),
                "server_learning_rate": self.options.server_learning_rate, "state_bytes": self.outcome.state_bytes}


def plan_round(*, registry: Registry, options: AggregationOptions, actor: str,
               clock: Clock = SYSTEM_CLOCK) -> RoundPlan:
    """The round's starting point: the active Main Brain, the strategy and the update spec."""
    main = load_main_brain(registry=registry)
    partition = partition_parameters(main.brain.model, frozen_prefixes=options.freeze_layers)
    if not partition.aggregated:
        raise ConfigError("every shared parameter is frozen (AIVO_FREEZE_LAYERS): clones produce no updates")
    params = dict(main.brain.model.named_parameters())
    spec = UpdateSpec(main_version=main.version.version,
                      shapes={n: tuple(params[n].shape) for n in partition.aggregated})
    return RoundPlan(options=options, actor=actor, clock=clock, main=main, strategy=options.make_strategy(), spec=spec)


def select(plan: RoundPlan, *, registry: Registry) -> None:
    """Eligible learners -> the pool -> the Poisson sample (when the pool is large enough)."""
    options = plan.options
    with registry.session(read_only=True) as session:
        plan.eligible = get_eligible_for_aggregation(session=session, max_stale_days=options.max_stale_days,
                                                     kind=KIND, clock=plan.clock)
        rounds_done = session.scalar(sa.select(sa.func.count()).select_from(FederatedUpdate))
    plan.privacy = options.plan(num_learners=len(plan.eligible) or None)
    version = plan.version
    plan.stale = [e for e in plan.eligible if e.main_version != version]
    plan.no_update = [e for e in plan.eligible if e.main_version == version and e.update_artifact_sha256 is None]
    plan.candidates = {e.learner_id: e for e in plan.eligible
                       if e.main_version == version and e.update_artifact_sha256}
    plan.pool = sorted(plan.candidates)
    if options.dp_enabled:
        with registry.session(read_only=True) as session:
            ledgers = get_ledgers(session=session, learner_ids=plan.pool, kind=KIND)
        split = split_by_budget(ledgers=ledgers, candidates=plan.pool, noise_multiplier=options.noise_multiplier,
                                sample_rate=options.sample_rate, delta=options.delta, budget=options.epsilon_budget,
                                accountant=options.accountant)
        plan.pool, plan.over_budget, plan.projected_epsilon = split.allowed, split.excluded, split.projected_epsilon
    if not plan.enough_learners:
        return
    # Sampling and noise share one generator: fresh entropy unless a seed is given.
    plan.generator = np.random.default_rng(None if options.seed is None else [options.seed, rounds_done])
    chosen = poisson_sample(len(plan.pool), sample_rate=options.sample_rate, generator=plan.generator)
    plan.sampled = [plan.pool[i] for i in np.flatnonzero(chosen)]


def aggregate(plan: RoundPlan, *, registry: Registry) -> None:
    """Stream the sampled updates from the store through the strategy (DP-wrapped when enabled)."""
    options = plan.options
    strategy: Strategy | PrivateStrategy = plan.strategy
    if options.dp_enabled:
        plan.private = options.user_level_dp().wrap(plan.strategy, num_eligible=len(plan.pool))
        strategy = plan.private
    entries = [plan.candidates[learner_id] for learner_id in plan.sampled]
    metric = plan.strategy.session_metric()
    scores = _session_scores(registry, [e.training_session_id for e in entries], metric) if metric else {}
    load_failures: list[RejectedUpdate] = []
    plan.outcome = aggregate_updates(updates=stream_updates(registry.store, entries, scores, load_failures),
                                     spec=plan.spec, strategy=strategy, clip_norm=options.clip_norm,
                                     server_learning_rate=options.server_learning_rate, generator=plan.generator)
    plan.rejected = load_failures + plan.outcome.rejected


def gate(plan: RoundPlan, *, registry: Registry, data: GateData | None = None) -> None:
    """Candidate = main + the server step; the gate scores both on held-out interactions
    (`data`, default: the registry's held-out tails) and decides."""
    options = plan.options
    plan.candidate = candidate_brain(plan.main.brain, plan.spec.unflatten(plan.outcome.delta), plan.version)
    if data is None:
        data = load_gate_data(registry=registry, max_learners=options.gate_max_learners,
                              holdout_fraction=options.holdout_fraction)
    if data is None:
        plan.decision = GateDecision(passes=False, improvement=None, reason=NO_HELD_OUT)
        return
    plan.metrics_before = score(plan.main.brain, data)
    plan.metrics_after = score(plan.candidate, data)
    plan.decision = decide(before=plan.metrics_before, after=plan.metrics_after, margin=options.gate_margin)


def commit(plan: RoundPlan, *, registry: Registry, message: str) -> None:
    """Everything the round changes, in one transaction (the candidate's weights stored first).
    `message` is the audit reason when the round has no gate verdict."""
    options, version, clock = plan.options, plan.version, plan.clock
    promote = plan.candidate if plan.passes else None
    artifact = None
    if promote is not None:
        tensors, metadata = to_state(promote)
        artifact = registry.store.put_tensors(tensors, metadata=metadata)
    sampled = set(plan.sampled)
    consumed = sorted(set(plan.outcome.accepted_sessions) | {r.session_id for r in plan.rejected
                                                             if r.session_id is not None and r.learner_id in sampled})
    reason = plan.gate_reason
    with registry.session() as session:
        active = get_active_main_version(session=session)
        if active is None or active.version != version:
            raise ConflictError(f"the active main version changed during aggregation (was {version}); run it again")
        version_after = None
        if promote is not None:
            version_after = next_main_version_name(session=session)
            register_main_version(session=session, store=registry.store, version=version_after, artifact=artifact,
                                  architecture=architecture_of(promote),
                                  training_metrics={"gate": plan.metrics_after, "federated": True},
                                  data_hash=None, parent_version=version, created_by=plan.actor,
                                  details={"federated": plan.aggregation_summary()}, clock=clock)
            promote_main_version(session=session, version=version_after, actor=plan.actor,
                                 reason=f"federated aggregation: {reason}", clock=clock)
        record = record_federated_update(
            session=session, version_before=version, version_after=version_after, strategy=plan.strategy.name,
            status="applied" if promote is not None else "rejected", contributing_session_ids=consumed,
            num_contributors=plan.outcome.num_accepted, metrics_before=plan.metrics_before,
            metrics_after=plan.metrics_after, improvement=plan.decision.improvement if plan.decision else None,
            privacy={k: v for k, v in plan.privacy_figures().items() if v is not None},
            # every rejection with its reason: updates built against another version, unreadable
            # artifacts and updates the checks refused
            details={"counts": plan.counts(), "rejected": [r.to_dict() for r in plan.rejections()[:1000]],
                     "aggregation": plan.aggregation_summary(), "gate": reason, "gate_margin": options.gate_margin,
                     "warnings": list(plan.privacy.warnings)}, clock=clock)
        charged = charge_round(session=session, eligible=plan.pool, sampled=plan.sampled, private=options.dp_enabled,
                               noise_multiplier=options.noise_multiplier, sample_rate=options.sample_rate,
                               delta=options.delta, accountant=options.accountant, kind=KIND, clock=clock,
                               skip_erased=True)  # the pool was read from this registry
        # Learners erased while the round ran are not charged (nothing of theirs remains).
        plan.erased_during_round = (len(plan.pool) if options.dp_enabled else len(set(plan.sampled))) - charged
        write_audit(session=session, actor=plan.actor, action="federated.aggregate",
                    target=version_after or version, reason=reason or message,
                    details={"federated_update_id": record.id, "pool": len(plan.pool), "sampled": len(plan.sampled),
                             "accepted": plan.outcome.num_accepted, "rejected": len(plan.rejected),
                             "dp": options.dp_enabled},
                    clock=clock)
    plan.version_after, plan.federated_update_id = version_after, record.id


def _session_scores(registry: Registry, session_ids: list[int], metric: str) -> dict[int, float | None]:
    table = TrainingSession.__table__
    out: dict[int, float | None] = {}
    with registry.session(read_only=True) as session:
        for start in range(0, len(session_ids), 500):
            chunk = session_ids[start:start + 500]
            for sid, metrics in session.execute(sa.select(table.c.id, table.c.metrics).where(table.c.id.in_(chunk))):
                value = (metrics or {}).get(metric)
                out[sid] = float(value) if isinstance(value, (int, float)) else None
    return out


def candidate_brain(brain: TrainedBrain, delta: dict[str, torch.Tensor], parent: str,
                    **info) -> TrainedBrain:
    """A copy of `brain` with `delta` added to its parameters (the round's candidate); `info`
    is added to the checkpoint's info (e.g. which federation made it)."""
    model = copy.deepcopy(brain.model)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, change in delta.items():
            params[name] += change.to(params[name].dtype)
    model.eval()
    return TrainedBrain(model=model, vocab=brain.vocab, tables=brain.tables,
                        info={**brain.info, "parent_version": parent, "federated": True, **info})
