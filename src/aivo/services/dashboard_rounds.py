"""The dashboard's federated rounds: every round with what the aggregation service wrote about
it (pool, sampled, accepted, clipped, rejected, the gate's decision, the privacy figures) and the
rounds that never reached the registry because too few learners could contribute (they live in
the `federated` trainer job's result, status `skipped`).

Privacy figures, as written: an embedded round (aivo.services.aggregation) records, before it runs,
the epsilon of one round alone (`epsilon_one_round`) and each pooled learner's epsilon after this
round (`epsilon_after_round_max`, `_median`); a round across sites (aivo.sites) records
`epsilon_round` and the federation's total after it (`epsilon_federation`). Per learner, the
ledger's epsilon is what each learner has spent so far (user level; never added to record-level
DP-SGD epsilon).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from aivo.config import Settings
from aivo.registry import FederatedUpdateRecord, Registry, get_federated_update, list_federated_updates
from aivo.registry.tables import Learner, PrivacyLedgerEntry, TrainerJob

MAX_ROUNDS = 500


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class RoundRow:
    at: datetime
    status: str  # applied | rejected | failed | skipped
    update_id: int | None  # federated_updates.id (None for a skipped round)
    job_id: int | None  # the trainer job that ran it, when one did
    mode: str  # embedded | sites
    version_before: str | None
    version_after: str | None
    strategy: str
    dp: bool | None
    pool: int | None
    sampled: int | None
    accepted: int | None
    clipped: int | None
    rejected: int | None
    auc_before: float | None
    auc_after: float | None
    improvement: float | None
    gate: str  # the gate's decision, or why nothing was aggregated
    epsilon_one_round: float | None
    epsilon_after_max: float | None  # the most-charged pooled learner after this round (embedded)
    epsilon_after_median: float | None
    epsilon_total: float | None  # across sites: the federation's epsilon after this round
    epsilon_budget: float | None
    sites: list[dict[str, Any]] = field(default_factory=list)  # rounds across sites: per-site participation


def round_row(record: FederatedUpdateRecord) -> RoundRow:
    details, privacy = record.details or {}, record.privacy or {}
    counts = details.get("counts") or {}
    aggregation = details.get("aggregation") or {}
    mode = "sites" if details.get("mode") == "sites" else "embedded"
    gate = details.get("gate") or details.get("message") or ""
    if record.status == "rejected" and not gate:
        gate = "candidate not promoted"
    rejected = counts.get("rejected")
    if rejected is None and isinstance(details.get("rejected"), list):
        rejected = len(details["rejected"])
    return RoundRow(
        at=record.created_at, status=record.status, update_id=record.id, job_id=None, mode=mode,
        version_before=record.version_before, version_after=record.version_after, strategy=record.strategy,
        dp=privacy.get("enabled"), pool=counts.get("pool", privacy.get("pool")),
        sampled=counts.get("sampled", privacy.get("sampled")),
        accepted=counts.get("accepted", counts.get("learners_accepted", record.num_contributors)),
        clipped=aggregation.get("clipped"), rejected=rejected,
        auc_before=_num((record.metrics_before or {}).get("auc")),
        auc_after=_num((record.metrics_after or {}).get("auc")), improvement=record.improvement, gate=str(gate),
        epsilon_one_round=_num(privacy.get("epsilon_one_round", privacy.get("epsilon_round"))),
        epsilon_after_max=_num(privacy.get("epsilon_after_round_max")),
        epsilon_after_median=_num(privacy.get("epsilon_after_round_median")),
        epsilon_total=_num(privacy.get("epsilon_federation")), epsilon_budget=_num(privacy.get("epsilon_budget")),
        sites=[s for s in details.get("sites") or [] if isinstance(s, dict)])


def _skipped_rounds(session, since: datetime | None) -> list[RoundRow]:
    """Federated jobs whose round did not run: their result says `skipped` and why."""
    stmt = (sa.select(TrainerJob.id, TrainerJob.finished_at, TrainerJob.result)
            .where(TrainerJob.kind == "federated", TrainerJob.status == "succeeded")
            .order_by(TrainerJob.id.desc()).limit(MAX_ROUNDS))
    if since is not None:
        stmt = stmt.where(TrainerJob.finished_at >= since)
    out = []
    for job_id, finished, result in session.execute(stmt):
        result = result or {}
        if result.get("status") != "skipped" or finished is None:
            continue
        counts, privacy = result.get("counts") or {}, result.get("privacy") or {}
        out.append(RoundRow(
            at=finished, status="skipped", update_id=None, job_id=job_id, mode="embedded",
            version_before=result.get("version_before"), version_after=None,
            strategy=str((result.get("aggregation") or {}).get("strategy") or ""), dp=privacy.get("enabled"),
            pool=counts.get("pool"), sampled=None, accepted=None, clipped=None, rejected=None, auc_before=None,
            auc_after=None, improvement=None, gate=str(result.get("message") or "skipped"),
            epsilon_one_round=_num(privacy.get("epsilon_one_round")), epsilon_after_max=None,
            epsilon_after_median=None, epsilon_total=None, epsilon_budget=_num(privacy.get("epsilon_budget"))))
    return out


def _jobs_of_updates(session) -> dict[int, int]:
    """federated update id -> the trainer job that ran it."""
    rows = session.execute(sa.select(TrainerJob.id, TrainerJob.result)
                           .where(TrainerJob.kind == "federated", TrainerJob.status == "succeeded")
                           .order_by(TrainerJob.id.desc()).limit(MAX_ROUNDS))
    out = {}
    for job_id, result in rows:
        update_id = (result or {}).get("federated_update_id")
        if isinstance(update_id, int):
            out[update_id] = job_id
    return out


def list_rounds(*, registry: Registry, since: datetime | None = None, limit: int = MAX_ROUNDS) -> list[RoundRow]:
    """Every round (oldest first): recorded rounds and skipped ones, within the time range."""
    with registry.session(read_only=True) as session:
        records = list_federated_updates(session=session, limit=limit)
        jobs = _jobs_of_updates(session)
        skipped = _skipped_rounds(session, since)
    rows = []
    for record in records:
        if since is not None and record.created_at < since:
            continue
        row = round_row(record)
        if record.id in jobs:
            row = RoundRow(**{**row.__dict__, "job_id": jobs[record.id]})
        rows.append(row)
    return sorted(rows + skipped, key=lambda r: r.at)


@dataclass(frozen=True)
class RoundDetail:
    row: RoundRow
    record: FederatedUpdateRecord
    rejected: list[dict[str, Any]]  # learner updates refused, with the reason (no learner id shown)
    warnings: list[str]
    counts: dict[str, Any]
    privacy: dict[str, Any]
    aggregation: dict[str, Any]


def round_detail(*, registry: Registry, update_id: int) -> RoundDetail:
    record = registry.run(lambda session: get_federated_update(session=session, update_id=update_id),
                          read_only=True)
    details = record.details or {}
    rejected = [{"reason": r.get("reason", "")} for r in details.get("rejected") or [] if isinstance(r, dict)]
    return RoundDetail(row=round_row(record), record=record, rejected=rejected,
                       warnings=[str(w) for w in details.get("warnings") or []], counts=dict(details.get("counts") or {}),
                       privacy=dict(record.privacy or {}), aggregation=dict(details.get("aggregation") or {}))


@dataclass(frozen=True)
class LedgerSummary:
    epsilons: list[float]  # user-level epsilon spent, one per learner with a ledger (finite ones)
    non_private: int  # learners who took part in a round without DP: no guarantee holds
    budget: float
    exhausted: int  # learners at or over the budget (they no longer contribute)
    learners: int  # learners with a ledger


def ledger_summary(*, registry: Registry, settings: Settings, tenant: str | None = None) -> LedgerSummary:
    """What the privacy ledger holds, per learner (of `tenant` when given)."""
    ledger = PrivacyLedgerEntry
    stmt = sa.select(ledger.epsilon, ledger.non_private_rounds)
    if tenant is not None:
        stmt = stmt.join(Learner, Learner.id == ledger.learner_id).where(Learner.tenant == tenant)
    with registry.session(read_only=True) as session:
        rows = session.execute(stmt).all()
    epsilons = [float(e) for e, _ in rows if e is not None and math.isfinite(e)]
    non_private = sum(1 for _, n in rows if n)
    budget = settings.epsilon_budget
    return LedgerSummary(epsilons=epsilons, non_private=non_private, budget=budget,
                         exhausted=sum(e >= budget for e in epsilons) + non_private, learners=len(rows))
