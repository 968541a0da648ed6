"""Aggregation use case: one federated round through the registry (`aivo aggregate`,
POST /v1/federated/aggregate, the `federated` trainer job), and the list of past rounds.

`run_aggregation` runs the round's steps (aivo.federated.round: plan, select, aggregate, gate,
commit) over one `RoundPlan` and reports on it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import AivoError, DataError
from aivo.federated.gate import GateData
from aivo.federated.round import AggregationOptions, RoundPlan, aggregate, commit, gate, plan_round, select
from aivo.registry import FederatedUpdateRecord, Registry, list_federated_updates
from aivo.training.context import JobContext, JobOutcome
from aivo.training.kinds import JobKind
from aivo.training.retraining import RetrainingDecision, schedule_retraining
from aivo.training.runs import FEDERATED_MODEL_ID

log = logging.getLogger(__name__)

__all__ = ["AggregationOptions", "AggregationReport", "FederatedKind", "list_rounds", "queue_round", "run_aggregation"]


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
                    gate_data: GateData | None = None) -> AggregationReport:
    """One federated round (see aivo.federated.round). `gate_data` overrides the held-out data."""
    started = time.perf_counter()
    plan = plan_round(registry=registry, options=options, actor=actor, clock=clock)
    select(plan, registry=registry)
    for warning in plan.privacy.warnings:  # also in the report; the CLI shows them before it calls this
        log.info("privacy: %s", warning)
    if plan.enough_learners:
        aggregate(plan, registry=registry)
        if plan.aggregated:
            gate(plan, registry=registry, data=gate_data)
        if not options.dry_run:
            commit(plan, registry=registry, message=_message(plan))
    return _report(plan, seconds=time.perf_counter() - started)


def _status(plan: RoundPlan) -> str:
    if not plan.enough_learners:
        return "skipped"
    if not plan.aggregated:
        return "skipped" if plan.options.dry_run else "rejected"
    if plan.options.dry_run:
        return "dry-run"
    return "applied" if plan.passes else "rejected"


def _message(plan: RoundPlan) -> str:
    if not plan.enough_learners:
        return (f"no update: {len(plan.pool)} learner(s) can contribute (eligible {len(plan.eligible)}, "
                f"over budget {len(plan.over_budget)}, other version {len(plan.stale)}, without update "
                f"{len(plan.no_update)}); at least {plan.options.min_learners} needed")
    if not plan.aggregated:
        return "no update: none of the sampled updates could be aggregated"
    if plan.options.dry_run:
        return f"dry run: the candidate would be {'promoted' if plan.passes else 'rejected'}: {plan.gate_reason}"
    if plan.promoted:
        return f"{plan.version_after} promoted: {plan.gate_reason}"
    return f"candidate not promoted: {plan.gate_reason}"


def _report(plan: RoundPlan, *, seconds: float) -> AggregationReport:
    dry_run = plan.options.dry_run
    return AggregationReport(
        status=_status(plan), message=_message(plan), version_before=plan.version, version_after=plan.version_after,
        promoted=plan.promoted, would_promote=plan.passes if dry_run and plan.decision is not None else None,
        counts=plan.counts(), rejected=[r.to_dict() for r in plan.rejections()], metrics_before=plan.metrics_before,
        metrics_after=plan.metrics_after, improvement=plan.decision.improvement if plan.decision else None,
        privacy=plan.privacy_figures(), warnings=list(plan.privacy.warnings), aggregation=plan.aggregation_summary(),
        federated_update_id=plan.federated_update_id, dry_run=dry_run, seconds=seconds)


def queue_round(*, registry: Registry, settings: Settings, reason: str, actor: str,
                clock: Clock = SYSTEM_CLOCK) -> RetrainingDecision:
    """Queue a round as a `federated` trainer job (a worker runs it with the AIVO_* settings)."""
    return schedule_retraining(registry=registry, settings=settings, model_id=FEDERATED_MODEL_ID, reason=reason,
                               priority="high", force=True, created_by=actor, clock=clock)


def list_rounds(*, registry: Registry, status: str | None = None, limit: int = 50,
                offset: int = 0) -> list[FederatedUpdateRecord]:
    """Past rounds, newest first (GET /v1/federated/updates)."""
    return registry.run(lambda session: list_federated_updates(session=session, status=status, limit=limit,
                                                               offset=offset), read_only=True)


# --- the `federated` trainer job -------------------------------------------------------------

class FederatedKind(JobKind):
    """The `federated` trainer job: one aggregation round with the settings' options plus the
    job's `config` (strategy, min_learners, ...); too few eligible learners is a successful job
    whose result says "skipped"."""

    name = "federated"
    submittable = True

    def check_config(self, *, config: dict[str, Any], settings: Settings) -> None:
        self._options(config, settings)

    def _options(self, config: dict[str, Any], settings: Settings) -> "AggregationOptions":
        if "dry_run" in config:
            raise DataError("federated jobs always apply their round; use `aivo aggregate --dry-run` to preview")
        try:
            return AggregationOptions.from_settings(settings, **config)
        except TypeError as exc:
            raise DataError(f"invalid federated config: {exc}") from None
        except AivoError as exc:
            raise DataError(exc.message) from None

    def run(self, ctx: JobContext) -> JobOutcome:
        ctx.report("running", 0.1, "federated aggregation round")
        report = run_aggregation(registry=ctx.registry, options=self._options(ctx.job.config, ctx.settings),
                                 actor=f"trainer-job-{ctx.job.id}", clock=ctx.clock)
        return JobOutcome(result=report.to_dict())
