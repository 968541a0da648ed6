"""The dashboard's drift view: every stored drift check of the Main Brain, its score and signals
against the threshold it was judged by, and what the check really did about it.

`drift_reports.action` is the truth about retraining: `scheduled` is true only when a job was
queued; a check run with `--no-schedule` (or `schedule=False`) records `{"scheduled": false}`
without a status, and a refused request records the scheduler's status and reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aivo.registry import Registry
from aivo.services.drift import DriftReportRecord, list_drift_reports
from aivo.training.runs import MAIN_BRAIN_MODEL_ID

MAX_REPORTS = 500


@dataclass(frozen=True)
class DriftRow:
    id: int
    at: datetime
    version: str | None
    score: float | None
    threshold: float
    drifted: bool
    input: float | None
    prediction: float | None
    performance: float | None
    interactions: int | None  # in the check's window
    verdict: str  # one line: within threshold / drifted and what was done / not measurable
    tone: str  # ok | warn | bad | muted
    job_id: int | None  # the retraining job queued, when one was


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def drift_verdict(report: DriftReportRecord) -> tuple[str, str, int | None]:
    """(verdict, tone, job id) from what the check stored."""
    action = report.action or {}
    if report.score is None:
        note = (report.details or {}).get("note") or "not enough recent interactions to measure drift"
        return f"not measurable: {note}", "muted", None
    if not report.drifted:
        return f"within threshold ({report.score:.3f} ≤ {report.threshold:g})", "ok", None
    head = f"drifted ({report.score:.3f} > {report.threshold:g})"
    if action.get("scheduled"):
        return f"{head}: retraining queued as job {action.get('job_id')}", "warn", action.get("job_id")
    if action.get("status"):
        why = action.get("reason") or action["status"]
        return f"{head}: retraining not queued ({why})", "bad", action.get("job_id")
    return (f"{head}: retraining not scheduled (the check ran without scheduling, e.g. "
            "`aivo drift check --no-schedule`)"), "bad", None


def drift_row(report: DriftReportRecord) -> DriftRow:
    signals = report.signals or {}
    verdict, tone, job_id = drift_verdict(report)
    current = (report.details or {}).get("current") or {}
    return DriftRow(id=report.id, at=report.computed_at, version=report.version, score=report.score,
                    threshold=report.threshold, drifted=report.drifted, input=_num(signals.get("input")),
                    prediction=_num(signals.get("prediction")), performance=_num(signals.get("performance")),
                    interactions=current.get("interactions"), verdict=verdict, tone=tone, job_id=job_id)


def list_drift_rows(*, registry: Registry, since: datetime | None = None, limit: int = MAX_REPORTS) -> list[DriftRow]:
    """The Main Brain's drift checks, oldest first, within the time range."""
    reports = registry.run(lambda session: list_drift_reports(session=session, model_id=MAIN_BRAIN_MODEL_ID,
                                                              limit=limit), read_only=True)
    return [drift_row(r) for r in reversed(reports) if since is None or r.computed_at >= since]
