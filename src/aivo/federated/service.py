"""`run_aggregation`: one federated round through the registry (the service behind `aivo aggregate`).

1. Plan: privacy warnings from the accountant before anything runs.
2. Pool: learners whose latest training is recent, not yet aggregated, built against the
   active main version, with an update, and (under DP) whose epsilon after this round stays
   within the budget. Fewer than `min_learners`: nothing happens.
3. Poisson-sample the pool (rate q) and stream the sampled updates from the artifact store
   through the strategy (wrapped in user-level DP when enabled); bad updates are rejected
   with their reason.
4. Candidate = main + server step; the gate scores both on held-out interactions.
5. Unless dry run, in one transaction: register and promote the candidate if it passes,
   record the federated update (metrics, privacy figures, contributions, rejections), charge
   every pooled learner's privacy ledger, write the audit entry.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
import torch

from aivo.brain.bundle import TrainedBrain
from aivo.brain.checkpoint import to_state
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import AivoError, ConfigError, ConflictError
from aivo.federated.aggregate import AggregationOutcome, aggregate_updates
from aivo.federated.dp import UserLevelDP, poisson_sample
from aivo.federated.gate import decide, load_gate_data, score
from aivo.federated.strategies import Strategy, make_strategy
from aivo.federated.updates import UPDATE_KIND, LearnerUpdate, RejectedUpdate, UpdateSpec
from aivo.personalization.parts import partition_parameters
from aivo.privacy.ledger import charge_round, get_ledgers, split_by_budget
from aivo.privacy.planning import plan_privacy
from aivo.registry import (
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
from aivo.brain.versions import architecture_of, load_main_brain
from aivo.utils import read_ahead

log = logging.getLogger(__name__)
KIND = "brain"


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
        UserLevelDP(noise_multiplier=self.noise_multiplier, clip_norm=self.clip_norm, sample_rate=self.sample_rate,
                    weight_cap=self.weight_cap)

    def make_strategy(self) -> Strategy:
        # The reservoir size has a service-wide default (AIVO_RESERVOIR_SIZE): only robust strategies take it.
        # Options a user passes for one strategy are errors for another.
        robust = self.strategy in ("median", "trimmed-mean")
        return make_strategy(self.strategy, trim_fraction=self.trim_fraction, proximal_mu=self.proximal_mu,
                             reservoir_size=self.reservoir_size if robust else None, score_metric=self.score_metric)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "AggregationOptions":
        values: dict[str, Any] = dict(
            strategy=settings.aggregation_strategy, min_learners=settings.min_learners,
            max_stale_days=settings.max_stale_days, server_learning_rate=settings.server_learning_rate,
            dp_enabled=settings.enable_differential_privacy, noise_multiplier=settings.noise_multiplier,
            clip_norm=settings.clip_norm, sample_rate=settings.sampling_rate, delta=settings.delta,
            epsilon_budget=settings.epsilon_budget, accountant=settings.accountant, weight_cap=settings.dp_weight_cap,
            reservoir_size=settings.reservoir_size, gate_margin=settings.gate_margin,
            gate_max_learners=settings.gate_max_learners, holdout_fraction=settings.holdout_fraction,
            freeze_layers=settings.freeze_layers)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def plan(self, *, num_learners: int | None = None):
        return plan_privacy(enabled=self.dp_enabled, noise_multiplier=self.noise_multiplier,
                            sample_rate=self.sample_rate, clip_norm=self.clip_norm, delta=self.delta,
                            epsilon_budget=self.epsilon_budget, accountant=self.accountant, num_learners=num_learners)


@dataclass
class AggregationReport:
    status: str  # applied | rejected | skipped | dry-run
    message: str
    version_before: str
    version_after: str | None = None
    promoted: bool = False
    would_promote: bool | None = None  # dry run: the gate's verdict
    counts: dict[str, int] = field(default_factory=dict)
    rejected: list[dict] = field(default_factory=list)
    metrics_before: dict = field(default_factory=dict)
    metrics_after: dict = field(default_factory=dict)
    improvement: float | None = None
    privacy: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    aggregation: dict = field(default_factory=dict)
    federated_update_id: int | None = None
    dry_run: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_aggregation(*, registry: Registry, options: AggregationOptions, actor: str, clock: Clock = SYSTEM_CLOCK,
                    gate_data=None) -> AggregationReport:
    """One federated round; see the module doc. `gate_data` overrides the held-out data."""
    started = time.perf_counter()
    main = load_main_brain(registry=registry)
    version = main.version.version
    strategy = options.make_strategy()
    partition = partition_parameters(main.brain.model, frozen_prefixes=options.freeze_layers)
    if not partition.aggregated:
        raise ConfigError("every shared parameter is frozen (AIVO_FREEZE_LAYERS): clones produce no updates")
    params = dict(main.brain.model.named_parameters())
    spec = UpdateSpec(main_version=version, shapes={n: tuple(params[n].shape) for n in partition.aggregated})

    with registry.session(read_only=True) as session:
        eligible = get_eligible_for_aggregation(session=session, max_stale_days=options.max_stale_days, kind=KIND,
                                                clock=clock)
        rounds_done = session.scalar(sa.select(sa.func.count()).select_from(FederatedUpdate))
    plan = options.plan(num_learners=len(eligible) or None)
    report = AggregationReport(status="skipped", message="", version_before=version, dry_run=options.dry_run,
                               warnings=list(plan.warnings), privacy=plan.to_dict())
    for warning in plan.warnings:  # also in the report; the CLI shows them before it calls this
        log.info("privacy: %s", warning)

    stale = [e for e in eligible if e.main_version != version]
    no_update = [e for e in eligible if e.main_version == version and e.update_artifact_sha256 is None]
    candidates = {e.learner_id: e for e in eligible if e.main_version == version and e.update_artifact_sha256}
    report.rejected = [RejectedUpdate(e.learner_id, e.training_session_id,
                                      f"built against main version {e.main_version!r}, not {version!r}").to_dict()
                       for e in stale]
    pool = sorted(candidates)
    excluded_budget: list[str] = []
    if options.dp_enabled:
        with registry.session(read_only=True) as session:
            ledgers = get_ledgers(session=session, learner_ids=pool, kind=KIND)
        split = split_by_budget(ledgers=ledgers, candidates=pool, noise_multiplier=options.noise_multiplier,
                                sample_rate=options.sample_rate, delta=options.delta, budget=options.epsilon_budget,
                                accountant=options.accountant)
        pool, excluded_budget = split.allowed, split.excluded
        if split.projected_epsilon:
            values = np.array(list(split.projected_epsilon.values()))
            report.privacy.update(epsilon_after_round_max=float(values.max()),
                                  epsilon_after_round_median=float(np.median(values)))
    report.counts = {"eligible": len(eligible), "stale_version": len(stale), "no_update": len(no_update),
                     "over_budget": len(excluded_budget), "pool": len(pool)}
    if len(pool) < options.min_learners:
        report.message = (f"no update: {len(pool)} learner(s) can contribute (eligible {len(eligible)}, "
                          f"over budget {len(excluded_budget)}, other version {len(stale)}, without update "
                          f"{len(no_update)}); at least {options.min_learners} needed")
        report.seconds = time.perf_counter() - started
        return report

    # Sampling and noise share one generator: fresh entropy unless a seed is given.
    generator = np.random.default_rng(None if options.seed is None else [options.seed, rounds_done])
    sampled = [pool[i] for i in np.flatnonzero(poisson_sample(len(pool), sample_rate=options.sample_rate,
                                                              generator=generator))]
    wrapped = (UserLevelDP(noise_multiplier=options.noise_multiplier, clip_norm=options.clip_norm,
                           sample_rate=options.sample_rate, weight_cap=options.weight_cap)
               .wrap(strategy, num_eligible=len(pool)) if options.dp_enabled else strategy)
    scores = _session_scores(registry, [candidates[lid].training_session_id for lid in sampled],
                             strategy.score_metric) if hasattr(strategy, "score_metric") else {}
    load_failures: list[RejectedUpdate] = []
    outcome = aggregate_updates(
        updates=stream_updates(registry.store, [candidates[lid] for lid in sampled], scores, load_failures),
        spec=spec, strategy=wrapped, clip_norm=options.clip_norm, server_learning_rate=options.server_learning_rate,
        generator=generator)
    rejected = load_failures + outcome.rejected
    report.rejected += [r.to_dict() for r in rejected]
    report.counts.update(sampled=len(sampled), accepted=outcome.num_accepted, rejected=len(rejected))
    report.aggregation = {**outcome.summary(), "strategy": strategy.describe(), "dp": options.dp_enabled,
                          "expected_participants": options.sample_rate * len(pool),
                          "server_learning_rate": options.server_learning_rate, "state_bytes": outcome.state_bytes}
    report.privacy.update(sampled=len(sampled), pool=len(pool), expected_participants=options.sample_rate * len(pool))
    if options.dp_enabled:
        report.privacy.update(noise_std_of_sum=wrapped.noise_std, weight_cap=wrapped.weight_cap,
                              denominator=wrapped.expected_participants)

    if outcome.delta is None:
        report.status = "skipped" if options.dry_run else "rejected"
        report.message = "no update: none of the sampled updates could be aggregated"
        if not options.dry_run:
            report.federated_update_id = _commit(registry, options, report, strategy, version, None, None, pool,
                                                 sampled, outcome, rejected, actor, clock)
        report.seconds = time.perf_counter() - started
        return report

    candidate = _candidate(main.brain, spec.unflatten(outcome.delta), version)
    data = gate_data if gate_data is not None else load_gate_data(
        registry=registry, max_learners=options.gate_max_learners, holdout_fraction=options.holdout_fraction)
    if data is None:
        decision_passes, improvement, reason = False, None, "no held-out interactions to evaluate on"
    else:
        report.metrics_before = score(main.brain, data)
        report.metrics_after = score(candidate, data)
        decision = decide(before=report.metrics_before, after=report.metrics_after, margin=options.gate_margin)
        decision_passes, improvement, reason = decision.passes, decision.improvement, decision.reason
    report.improvement = improvement
    if options.dry_run:
        report.status, report.would_promote = "dry-run", decision_passes
        report.message = f"dry run: the candidate would be {'promoted' if decision_passes else 'rejected'}: {reason}"
        report.seconds = time.perf_counter() - started
        return report
    report.federated_update_id = _commit(registry, options, report, strategy, version,
                                         candidate if decision_passes else None, reason, pool, sampled, outcome,
                                         rejected, actor, clock)
    report.status = "applied" if decision_passes else "rejected"
    report.promoted = decision_passes
    report.message = (f"{report.version_after} promoted: {reason}" if decision_passes
                      else f"candidate not promoted: {reason}")
    report.seconds = time.perf_counter() - started
    return report


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


def stream_updates(store, entries, scores: dict, failures: list[RejectedUpdate], *,
                   read_ahead_depth: int = 8) -> Iterator[LearnerUpdate]:
    """Load each sampled update from the store (hash-verified), in order. Reading and hashing
    run a few artifacts ahead in two threads (they release the GIL); memory stays bounded by
    `read_ahead_depth` updates. `entries` carry learner_id, training_session_id, samples and
    update_artifact_sha256 (an `EligibleLearner`); unreadable ones are added to `failures`."""
    def load(entry):
        try:
            return entry, *store.load_tensors(entry.update_artifact_sha256)
        except AivoError as exc:
            return entry, exc, None

    for entry, tensors, metadata in read_ahead(load, entries, depth=read_ahead_depth):
        if isinstance(tensors, AivoError):
            failures.append(RejectedUpdate(entry.learner_id, entry.training_session_id,
                                           f"unreadable update: {tensors}"))
            continue
        if metadata.get("kind") != UPDATE_KIND:
            failures.append(RejectedUpdate(entry.learner_id, entry.training_session_id,
                                           f"not a learner update (kind {metadata.get('kind')!r})"))
            continue
        yield LearnerUpdate(learner_id=entry.learner_id, tensors=tensors,
                            main_version=str(metadata.get("main_version")),
                            num_examples=int(metadata.get("num_examples", entry.samples)),
                            score=scores.get(entry.training_session_id), session_id=entry.training_session_id)


def _candidate(brain: TrainedBrain, delta: dict[str, torch.Tensor], parent: str) -> TrainedBrain:
    model = copy.deepcopy(brain.model)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, change in delta.items():
            params[name] += change.to(params[name].dtype)
    model.eval()
    return TrainedBrain(model=model, vocab=brain.vocab, tables=brain.tables,
                        info={**brain.info, "parent_version": parent, "federated": True})


def _commit(registry: Registry, options: AggregationOptions, report: AggregationReport, strategy: Strategy,
            version: str, candidate: TrainedBrain | None, reason: str | None, pool: list[str], sampled: list[str],
            outcome: AggregationOutcome, rejected: list[RejectedUpdate], actor: str, clock: Clock) -> int:
    """Everything the round changes, in one transaction (candidate weights stored first)."""
    artifact = None
    if candidate is not None:
        tensors, metadata = to_state(candidate)
        artifact = registry.store.put_tensors(tensors, metadata=metadata)
    consumed = sorted(set(outcome.accepted_sessions) | {r.session_id for r in rejected if r.session_id is not None
                                                        and r.learner_id in set(sampled)})
    privacy = report.privacy
    with registry.session() as session:
        active = get_active_main_version(session=session)
        if active is None or active.version != version:
            raise ConflictError(f"the active main version changed during aggregation (was {version}); run it again")
        version_after = None
        if candidate is not None:
            version_after = next_main_version_name(session=session)
            register_main_version(session=session, store=registry.store, version=version_after, artifact=artifact,
                                  architecture=architecture_of(candidate),
                                  training_metrics={"gate": report.metrics_after, "federated": True},
                                  data_hash=None, parent_version=version, created_by=actor,
                                  details={"federated": report.aggregation}, clock=clock)
            promote_main_version(session=session, version=version_after, actor=actor,
                                 reason=f"federated aggregation: {reason}", clock=clock)
        record = record_federated_update(
            session=session, version_before=version, version_after=version_after, strategy=strategy.name,
            status="applied" if candidate is not None else "rejected", contributing_session_ids=consumed,
            num_contributors=outcome.num_accepted, metrics_before=report.metrics_before,
            metrics_after=report.metrics_after, improvement=report.improvement,
            privacy={k: v for k, v in privacy.items() if v is not None},
            # every rejection with its reason: updates built against another version, unreadable
            # artifacts and updates the checks refused
            details={"counts": report.counts, "rejected": report.rejected[:1000],
                     "aggregation": report.aggregation, "gate": reason, "gate_margin": options.gate_margin,
                     "warnings": report.warnings}, clock=clock)
        charged = charge_round(session=session, eligible=pool, sampled=sampled, private=options.dp_enabled,
                               noise_multiplier=options.noise_multiplier, sample_rate=options.sample_rate,
                               delta=options.delta, accountant=options.accountant, kind=KIND, clock=clock)
        # Learners erased while the round ran are not charged (nothing of theirs remains).
        report.counts["erased_during_round"] = (len(pool) if options.dp_enabled else len(set(sampled))) - charged
        write_audit(session=session, actor=actor, action="federated.aggregate", target=version_after or version,
                    reason=reason or report.message,
                    details={"federated_update_id": record.id, "pool": len(pool), "sampled": len(sampled),
                             "accepted": outcome.num_accepted, "rejected": len(rejected), "dp": options.dp_enabled},
                    clock=clock)
    report.version_after = version_after
    return record.id
