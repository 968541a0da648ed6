"""The dashboard's model registry: versions with where they came from and why they were (not)
promoted, a version's metrics, parameters and curves, two versions side by side, and the
audited promote / roll back actions.

Every figure is read from what training wrote: `training_metrics` (`test.metrics`,
`test.subgroups`, `validation`, `history` or the pipeline run's `training.history`, `search`),
`details` (pipeline run, job, decision) and the audit log (who promoted or rolled back, and why).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import DataError
from aivo.registry import (AuditRecord, MainVersionRecord, Registry, get_main_version, list_main_versions,
                           promote_main_version, rollback_main_version)
from aivo.registry.tables import AuditEntry, PipelineRun

MAX_VERSIONS = 500
METRICS = ("auc", "accuracy", "f1", "precision", "recall", "log_loss", "brier", "ece")
VERSION_ACTIONS = ("main.promote", "main.rollback", "main.archive")


def _dig(data: Any, *path: str) -> Any:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def test_metrics(record: MainVersionRecord) -> dict[str, Any]:
    """The version's test metrics whichever way it was trained (pipeline and `aivo train-main`:
    `test.metrics`; a federated candidate: the gate's `gate` scores on held-out interactions)."""
    metrics = record.training_metrics or {}
    for path in (("test", "metrics"), ("test",), ("gate",), ("metrics_after",)):
        found = _dig(metrics, *path)
        if isinstance(found, dict) and _number(found.get("auc")) is not None:
            return found
    return {}


def version_auc(record: MainVersionRecord) -> float | None:
    return _number(test_metrics(record).get("auc"))


def version_source(record: MainVersionRecord) -> str:
    details = record.details or {}
    if details.get("pipeline_run") is not None:
        job = details.get("job_id")
        return f"pipeline run {details['pipeline_run']}" + (f" (job {job})" if job else "")
    if (record.training_metrics or {}).get("federated") or details.get("federated") is not None:
        return "federated round across sites" if details.get("mode") == "sites" else "federated round"
    return "trained directly (aivo train-main or the demo)"


@dataclass(frozen=True)
class VersionRow:
    version: str
    status: str  # candidate | active | archived
    ever_active: bool  # promoted at some point (active now, or archived after being active)
    created_at: datetime
    created_by: str | None
    activated_at: datetime | None
    parent: str | None
    test_auc: float | None
    validation_auc: float | None
    data_hash: str | None
    source: str
    decision: str  # why it was (not) promoted, as recorded


def _decision(record: MainVersionRecord, audit: list[AuditRecord], run_decisions: dict[str, str]) -> str:
    for entry in audit:  # newest first
        if entry.target == record.version and entry.action in ("main.promote", "main.rollback"):
            verb = "promoted" if entry.action == "main.promote" else "reactivated by rollback"
            return f"{verb} by {entry.actor}: {entry.reason}" if entry.reason else f"{verb} by {entry.actor}"
    recorded = (record.details or {}).get("decision") or run_decisions.get(record.version)
    if recorded:
        return f"not promoted: {recorded}" if record.status == "candidate" else str(recorded)
    return "not promoted (no reason recorded)" if record.status == "candidate" else ""


def _row(record: MainVersionRecord, audit: list[AuditRecord], run_decisions: dict[str, str]) -> VersionRow:
    return VersionRow(version=record.version, status=record.status,
                      ever_active=record.status == "active" or record.activated_at is not None,
                      created_at=record.created_at, created_by=record.created_by, activated_at=record.activated_at,
                      parent=record.parent_version, test_auc=version_auc(record),
                      validation_auc=_number(_dig(record.training_metrics, "validation", "auc")),
                      data_hash=record.data_hash, source=version_source(record),
                      decision=_decision(record, audit, run_decisions))


def _version_audit(session, versions: list[str] | None = None, limit: int = 2000) -> list[AuditRecord]:
    stmt = (sa.select(AuditEntry).where(AuditEntry.action.in_(VERSION_ACTIONS))
            .order_by(AuditEntry.id.desc()).limit(limit))
    if versions is not None:
        stmt = stmt.where(AuditEntry.target.in_(versions))
    return [AuditRecord(id=e.id, at=e.at, actor=e.actor, action=e.action, target=e.target, reason=e.reason,
                        details=dict(e.details or {})) for e in session.scalars(stmt)]


def _run_decisions(session) -> dict[str, str]:
    rows = session.execute(sa.select(PipelineRun.candidate_version, PipelineRun.decision)
                           .where(PipelineRun.candidate_version.is_not(None)))
    return {version: decision for version, decision in rows if decision}


def list_versions(*, registry: Registry, limit: int = MAX_VERSIONS) -> list[VersionRow]:
    """Every version (newest first) with its test AUC, source and the recorded decision."""
    with registry.session(read_only=True) as session:
        records = list_main_versions(session=session, limit=limit)
        audit = _version_audit(session)
        decisions = _run_decisions(session)
    return [_row(r, audit, decisions) for r in records]


@dataclass(frozen=True)
class VersionDetail:
    row: VersionRow
    metrics: dict[str, float | None]  # test metrics (METRICS present)
    validation: dict[str, Any]
    subgroups: dict[str, dict[str, dict[str, Any]]]  # column -> group -> metrics (auc, n, ...)
    architecture: dict[str, Any]
    best_params: dict[str, Any]
    trials: list[dict[str, Any]]
    history: list[dict[str, Any]]  # per epoch: epoch, train_loss, validation_auc, validation_log_loss
    harness: dict[str, Any]
    audit: list[AuditRecord]
    artifact_sha256: str
    artifact_size: int
    details: dict[str, Any]
    report_image: Path | None  # the PNG `aivo demo` drew for this version, when it exists
    pipeline_run: int | None = None
    job_id: int | None = None
    relative_improvement: float | None = None
    federated: dict[str, Any] = field(default_factory=dict)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"config": {"hidden_dim": 12}} -> {"config.hidden_dim": 12} (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _history(record: MainVersionRecord, run_training: dict[str, Any] | None) -> list[dict[str, Any]]:
    for source in (record.training_metrics.get("history"), (run_training or {}).get("history")):
        if isinstance(source, list) and source:
            return [h for h in source if isinstance(h, dict)]
    return []


def report_image(settings: Settings, version: str) -> Path | None:
    """`AIVO_HOME/reports/<version>.png` (written by `aivo demo`), when it exists."""
    path = settings.home / "reports" / f"{version}.png"
    return path if path.is_file() else None


def version_detail(*, registry: Registry, settings: Settings, version: str) -> VersionDetail:
    """NotFoundError for an unknown version."""
    with registry.session(read_only=True) as session:
        record = get_main_version(session=session, version=version)
        audit = _version_audit(session, [version])
        run = None
        run_id = (record.details or {}).get("pipeline_run")
        if run_id is not None:
            run = session.get(PipelineRun, int(run_id))
        run_training = dict(run.training or {}) if run is not None else None
        decisions = {version: run.decision} if run is not None and run.decision else {}
    metrics = record.training_metrics or {}
    test = test_metrics(record)
    search = metrics.get("search") or {}
    return VersionDetail(
        row=_row(record, audit, decisions), metrics={m: _number(test.get(m)) for m in METRICS if m in test},
        validation=dict(metrics.get("validation") or {}),
        subgroups=dict(_dig(metrics, "test", "subgroups") or {}), architecture=flatten(record.architecture or {}),
        best_params=dict(search.get("best_params") or {}), trials=list(search.get("trials") or []),
        history=_history(record, run_training), harness=dict(metrics.get("harness") or {}), audit=audit,
        artifact_sha256=record.artifact_sha256, artifact_size=record.artifact_size, details=dict(record.details or {}),
        report_image=report_image(settings, version), pipeline_run=run_id,
        job_id=(record.details or {}).get("job_id"), relative_improvement=_number(metrics.get("relative_improvement")),
        federated=dict((record.details or {}).get("federated") or {}))


@dataclass(frozen=True)
class Comparison:
    a: VersionDetail
    b: VersionDetail
    metrics: list[tuple[str, float | None, float | None]]  # name, a, b
    subgroups: list[tuple[str, str, float | None, float | None, Any, Any]]  # column, group, auc a, auc b, n a, n b
    same_data: bool


def compare_versions(*, registry: Registry, settings: Settings, a: str, b: str) -> Comparison:
    if a == b:
        raise DataError("choose two different versions to compare")
    left = version_detail(registry=registry, settings=settings, version=a)
    right = version_detail(registry=registry, settings=settings, version=b)
    names = [m for m in METRICS if m in left.metrics or m in right.metrics]
    rows = [(m, left.metrics.get(m), right.metrics.get(m)) for m in names]
    groups = []
    for column in sorted(set(left.subgroups) | set(right.subgroups)):
        ga, gb = left.subgroups.get(column, {}), right.subgroups.get(column, {})
        for group in sorted(set(ga) | set(gb), key=str):
            ma, mb = ga.get(group) or {}, gb.get(group) or {}
            groups.append((column, str(group), _number(ma.get("auc")), _number(mb.get("auc")), ma.get("n"),
                           mb.get("n")))
    return Comparison(a=left, b=right, metrics=rows, subgroups=groups,
                      same_data=bool(left.row.data_hash) and left.row.data_hash == right.row.data_hash)


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DataError("say why (the reason is kept in the audit log)")
    if len(reason) > 1000:
        raise DataError("the reason is longer than 1000 characters")
    return reason


def promote_version(*, registry: Registry, version: str, actor: str, reason: str,
                    clock: Clock = SYSTEM_CLOCK) -> MainVersionRecord:
    """Make `version` active (the active one is archived). Audited with `actor` and `reason`."""
    reason = _reason(reason)
    return registry.run(lambda session: promote_main_version(session=session, version=version, actor=actor,
                                                             reason=reason, clock=clock))


def rollback_version(*, registry: Registry, actor: str, reason: str, to_version: str | None = None,
                     clock: Clock = SYSTEM_CLOCK) -> MainVersionRecord:
    """Reactivate the previously active version (or `to_version`). Audited."""
    reason = _reason(reason)
    return registry.run(lambda session: rollback_main_version(session=session, actor=actor, reason=reason,
                                                              to_version=to_version, clock=clock))


# --- closed-loop policy evaluation (aivo evaluate-policy) -------------------------------------

POLICY_REPORT = Path("policy-evaluation") / "latest.json"  # under AIVO_HOME, written by `aivo evaluate-policy`


@dataclass(frozen=True)
class PolicyCurves:
    """Mastery against items practised, one line per policy, for one simulated learner model."""

    learner_model: str
    num_learners: int
    curves: dict[str, tuple[list[int], list[float]]]  # policy -> (items practised, mean post-test score)
    post_test_100: dict[str, float]  # policy -> mean post-test score after 100 items (when measured)


def policy_curves(settings: Settings) -> list[PolicyCurves]:
    """The curves of the last `aivo evaluate-policy` run (AIVO_HOME/policy-evaluation/latest.json);
    empty when there was none or the file cannot be read."""
    path = settings.home / POLICY_REPORT
    try:
        summary = json.loads(path.read_text())
        out = []
        for model, entry in summary["learner_models"].items():
            curves = {name: (list(map(int, row["curve"]["items"])), [float(y) for y in row["curve"]["mean"]])
                      for name, row in entry["policies"].items()}
            post = {name: float(row["post_test"]["100"]["mean"]) for name, row in entry["policies"].items()
                    if "100" in row["post_test"]}
            out.append(PolicyCurves(model, int(summary["spec"]["num_learners"]), curves, post))
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return []
