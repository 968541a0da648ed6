"""The dashboard's runs: every trainer job and continuous-training pipeline run, what it is doing
now (stage, epoch, validation AUC, ETA), its learning curve, log and decision, and the audited
cancel action.

A job's *outcome* says what really happened, not only that the worker finished: a federated job
whose round was skipped ("0 learners can contribute") or whose candidate the gate rejected is
shown as such, not as "succeeded".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import NotFoundError
from aivo.registry import Registry, write_audit
from aivo.registry.api_keys import VerifiedKey
from aivo.registry.tables import PipelineRun
from aivo.training.jobs import JOB_STATUSES, OPEN_JOB_STATUSES, TrainerJobRecord, cancel_job, get_job, list_jobs
from aivo.training.runs import PipelineRunRecord, get_run, list_runs

MIN_FRACTION_FOR_ETA = 0.03  # below this the estimate is noise
__all__ = ["JOB_STATUSES", "JobDetail", "JobList", "JobRow", "RunDetail", "RunRow", "cancel_job_for", "job_detail",
           "job_outcome", "job_row", "list_job_rows", "list_run_rows", "run_detail"]


@dataclass(frozen=True)
class JobRow:
    id: int
    kind: str
    model_id: str
    status: str  # the job's own: queued | validating | running | succeeded | failed | cancelled
    outcome: str  # what happened: "round skipped", "candidate aivo-main-v3 not promoted", ...
    tone: str  # ok | warn | bad | busy | muted (how the dashboard colours it)
    note: str  # the decision or message, one line
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None  # run time so far (running) or in total (finished)
    fraction: float | None
    stage: str
    eta_s: float | None
    created_by: str
    reason: str
    cancel_requested: bool
    learner: str | None  # pseudonym, for learner_model jobs
    candidate_version: str | None
    promoted_version: str | None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_JOB_STATUSES


def job_outcome(job: TrainerJobRecord) -> tuple[str, str, str]:
    """(outcome, tone, note) from the job's status and the result its kind wrote."""
    result = job.result or {}
    if job.status == "queued":
        return "queued", "muted", job.reason
    if job.status in ("validating", "running"):
        stage = job.progress.get("stage") or job.status
        note = job.progress.get("message") or ""
        return ("stopping" if job.cancel_requested else stage), "busy", note
    if job.status == "cancelled":
        return "cancelled", "muted", job.error or (job.progress or {}).get("message") or ""
    if job.status == "failed":
        return "failed", "bad", job.error or ""
    if job.kind == "federated":
        status, message = result.get("status"), result.get("message") or ""
        if status == "applied":
            return f"round applied: {result.get('version_after')} promoted", "ok", message
        if status == "rejected":
            return "round rejected by the gate", "warn", message
        if status == "skipped":
            return "round skipped", "warn", message
        return f"round {status or 'finished'}", "muted", message
    if job.kind == "main_brain":
        decision = result.get("decision") or ""
        if result.get("promoted"):
            return f"{job.candidate_version} promoted", "ok", decision
        return f"candidate {job.candidate_version} not promoted", "warn", decision
    if job.kind == "evaluation":
        passed = result.get("passed")
        return ("harness passed" if passed else "harness failed"), ("ok" if passed else "warn"), \
            str(result.get("summary") or "")
    if job.kind == "learner_model":
        status = result.get("status")
        note = (result.get("metrics") or {}).get("fallback_reason") or ""
        return (f"clone {status}" if status else "clone trained"), ("warn" if status == "fallback" else "ok"), note
    return "succeeded", "ok", ""


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def job_row(job: TrainerJobRecord, now: datetime) -> JobRow:
    outcome, tone, note = job_outcome(job)
    running = job.status in ("validating", "running")
    seconds = _seconds(job.started_at, now if running else job.finished_at)
    fraction = job.progress.get("fraction") if running else (1.0 if job.status == "succeeded" else None)
    eta = None
    if running and seconds is not None and isinstance(fraction, (int, float)) and fraction >= MIN_FRACTION_FOR_ETA:
        eta = seconds * (1 - fraction) / fraction
    return JobRow(id=job.id, kind=job.kind, model_id=job.model_id, status=job.status, outcome=outcome, tone=tone,
                  note=str(note)[:500], created_at=job.created_at, started_at=job.started_at,
                  finished_at=job.finished_at, seconds=seconds,
                  fraction=float(fraction) if isinstance(fraction, (int, float)) else None,
                  stage=str(job.progress.get("stage") or ""), eta_s=eta, created_by=job.created_by,
                  reason=job.reason, cancel_requested=job.cancel_requested, learner=job.learner_id,
                  candidate_version=job.candidate_version, promoted_version=job.promoted_version)


@dataclass(frozen=True)
class JobList:
    rows: list[JobRow]
    total: int
    open: int  # queued or running, whatever the filter


def list_job_rows(*, registry: Registry, key: VerifiedKey, status: str | None = None, kind: str | None = None,
                  limit: int = 50, offset: int = 0, clock: Clock = SYSTEM_CLOCK) -> JobList:
    """Jobs the key may see (its tenant's and the Main Brain's), newest first."""
    now = clock.now()

    def work(session) -> JobList:
        page = list_jobs(session=session, status=status, kind=kind, visible_to_tenant=key.tenant, limit=limit,
                         offset=offset)
        open_count = sum(list_jobs(session=session, status=s, visible_to_tenant=key.tenant, limit=1).total
                         for s in OPEN_JOB_STATUSES)
        return JobList(rows=[job_row(j, now) for j in page.jobs], total=page.total, open=open_count)

    return registry.run(work, read_only=True)


@dataclass(frozen=True)
class JobDetail:
    row: JobRow
    job: TrainerJobRecord
    progress: dict[str, Any]  # epoch, max_epochs, trial, trials, validation_auc, train_loss (while running)
    curve: list[dict[str, Any]]  # per epoch: epoch, validation_auc, train_loss (live, or the final history)
    curve_is_live: bool
    log: list[dict[str, Any]]  # at, stage, message
    decision: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    pipeline_run: PipelineRunRecord | None = None
    result: dict[str, Any] = field(default_factory=dict)


def _visible(job: TrainerJobRecord, key: VerifiedKey) -> TrainerJobRecord:
    if job.tenant not in (None, key.tenant):  # another tenant's job: as if it did not exist
        raise NotFoundError(f"trainer job {job.id} does not exist")
    return job


def _final_curve(job: TrainerJobRecord, run: PipelineRunRecord | None) -> list[dict[str, Any]]:
    for training in ((job.result or {}).get("training"), run.training if run is not None else None):
        history = (training or {}).get("history")
        if isinstance(history, list) and history:
            return [h for h in history if isinstance(h, dict)]
    return []


def job_detail(*, registry: Registry, key: VerifiedKey, job_id: int, clock: Clock = SYSTEM_CLOCK) -> JobDetail:
    """NotFoundError for an unknown job or another tenant's."""
    now = clock.now()

    def work(session) -> tuple[TrainerJobRecord, PipelineRunRecord | None]:
        job = _visible(get_job(session=session, job_id=job_id), key)
        if job.kind != "main_brain":
            return job, None
        run_id = (job.result or {}).get("run_id") or session.scalar(
            sa.select(PipelineRun.id).where(PipelineRun.job_id == job.id).order_by(PipelineRun.id.desc()).limit(1))
        return job, (get_run(session=session, run_id=int(run_id)) if run_id else None)

    job, run = registry.run(work, read_only=True)
    progress = dict(job.progress or {})
    live = progress.get("curve") if job.status in ("validating", "running") else None
    curve = [p for p in live if isinstance(p, dict)] if live else _final_curve(job, run)
    result = job.result or {}
    decision = result.get("decision") or result.get("message") or (run.decision if run is not None else "") \
        or job.error or ""
    trials = list(((result.get("search") or {}).get("trials")) or (run.search.get("trials") if run else []) or [])
    return JobDetail(row=job_row(job, now), job=job, progress=progress, curve=curve, curve_is_live=bool(live),
                     log=list(progress.get("log") or []), decision=str(decision), trials=trials, pipeline_run=run,
                     result=result)


def cancel_job_for(*, registry: Registry, key: VerifiedKey, job_id: int, actor: str,
                   clock: Clock = SYSTEM_CLOCK) -> JobRow:
    """Cancel a queued job at once, or ask a running one to stop (its worker sees it within
    seconds). ConflictError when it already finished. Audited."""

    def work(session) -> TrainerJobRecord:
        _visible(get_job(session=session, job_id=job_id), key)
        job = cancel_job(session=session, job_id=job_id, clock=clock)
        write_audit(session=session, actor=actor, action="job.cancel", target=f"job-{job_id}",
                    details={"kind": job.kind, "model_id": job.model_id if job.learner_id is None else job.kind,
                             "status": job.status}, clock=clock)
        return job

    return job_row(registry.run(work), clock.now())


@dataclass(frozen=True)
class RunRow:
    id: int
    job_id: int | None
    status: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    candidate_version: str | None
    promoted: bool
    test_auc: float | None
    relative_improvement: float | None
    decision: str
    error: str | None
    epochs_run: int | None


def _run_row(run: PipelineRunRecord) -> RunRow:
    auc = (run.test_metrics.get("metrics") or {}).get("auc") if run.test_metrics else None
    return RunRow(id=run.id, job_id=run.job_id, status=run.status, trigger=run.trigger, started_at=run.started_at,
                  finished_at=run.finished_at, candidate_version=run.candidate_version, promoted=run.promoted,
                  test_auc=auc if isinstance(auc, (int, float)) else None,
                  relative_improvement=run.relative_improvement, decision=run.decision, error=run.error,
                  epochs_run=(run.training or {}).get("epochs_run"))


def list_run_rows(*, registry: Registry, limit: int = 50) -> list[RunRow]:
    """Continuous-training pipeline runs, newest first."""
    return registry.run(lambda session: [_run_row(r) for r in list_runs(session=session, limit=limit)],
                        read_only=True)


@dataclass(frozen=True)
class RunDetail:
    row: RunRow
    run: PipelineRunRecord
    history: list[dict[str, Any]]
    trials: list[dict[str, Any]]


def run_detail(*, registry: Registry, run_id: int) -> RunDetail:
    run = registry.run(lambda session: get_run(session=session, run_id=run_id), read_only=True)
    history = [h for h in (run.training or {}).get("history") or [] if isinstance(h, dict)]
    return RunDetail(row=_run_row(run), run=run, history=history, trials=list((run.search or {}).get("trials") or []))
