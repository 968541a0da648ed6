"""Drift monitoring of the active Main Brain: references, checks, stored reports.

- The *reference* of a version is taken when the pipeline promotes it (input mix of the whole
  training snapshot; predictions and AUC on its test learners). A version promoted some other
  way gets one at its first check, from the interactions timestamped before its activation (its
  recorded test AUC is used when the version carries one).
- A *check* profiles the interactions of the last `window_days` (by their timestamp) and scores
  them against the reference (`aivo.training.drift`). Predictions for recent rows come from each
  recent learner's whole history up to now, as in serving, so a learner's first attempt in the
  window is not scored as a cold start. A score above DRIFT_THRESHOLD schedules retraining
  (`schedule_retraining`, which applies the already-training and minimum-interval guards).
- Every check is stored in `drift_reports` and served by `GET /v1/model/{id}/drift`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.brain.bundle import TrainedBrain
from aivo.brain.predict import predict
from aivo.brain.versions import load_main_brain
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.data.schema import InteractionLog
from aivo.errors import DataError, NotFoundError
from aivo.registry import MainVersionRecord, Registry, get_main_version, load_interactions
from aivo.registry.records import Record
from aivo.registry.tables import DriftReference, DriftReport
from aivo.training.drift import DriftConfig, Profile, build_profile, compare_profiles
from aivo.training.retraining import schedule_retraining
from aivo.training.runs import MAIN_BRAIN_MODEL_ID
from aivo.training.splits import stable_split

log = logging.getLogger(__name__)
DEFAULT_WINDOW_DAYS = 7.0
REFERENCE_LEARNERS = 500  # learners whose predictions form the reference distribution


@dataclass(frozen=True)
class DriftReportRecord(Record):
    id: int
    model_id: str
    version: str | None
    computed_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    score: float | None
    threshold: float
    drifted: bool
    signals: dict[str, Any]
    action: dict[str, Any]
    details: dict[str, Any]


def _record(row: DriftReport) -> DriftReportRecord:
    return DriftReportRecord(id=row.id, model_id=row.model_id, version=row.version, computed_at=row.computed_at,
                             window_start=row.window_start, window_end=row.window_end, score=row.score,
                             threshold=row.threshold, drifted=bool(row.drifted), signals=dict(row.signals or {}),
                             action=dict(row.action or {}), details=dict(row.details or {}))


def scored_predictions(brain: TrainedBrain, data: InteractionLog, mask: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(P(correct), answers) on the rows of `data` the model scores (and `mask` selects)."""
    prob = predict(brain=brain, log=data)
    keep = ~np.isnan(prob)
    if mask is not None:
        keep &= mask
    return prob[keep], data.frame["correct"].to_numpy()[keep]


def save_reference_from_data(*, registry: Registry, model_id: str, version: str, brain: TrainedBrain,
                             data: InteractionLog, test: InteractionLog, auc: float | None, source: str,
                             config: DriftConfig = DriftConfig(), clock: Clock = SYSTEM_CLOCK) -> Profile:
    # Predictions: the distribution over (a sample of) every learner of the snapshot, a far steadier
    # baseline than the few test learners; AUC: on the held-out test learners only.
    learners = np.array(sorted(data.frame["learner_id"].unique()), dtype=object)
    if len(learners) > REFERENCE_LEARNERS:
        learners = np.random.default_rng(0).choice(learners, size=REFERENCE_LEARNERS, replace=False)
    predictions, labels = scored_predictions(brain, data.select_learners(learners))
    profile = build_profile(data.frame, predictions=predictions, labels=labels, config=config, top_k=config.top_k)
    if auc is None:
        test_predictions, test_labels = scored_predictions(brain, test)
        auc = build_profile(test.frame, predictions=test_predictions, labels=test_labels, config=config).auc
    profile.auc = None if auc is None else float(auc)
    with registry.session() as session:
        existing = session.scalar(sa.select(DriftReference).where(DriftReference.model_id == model_id,
                                                                  DriftReference.version == version))
        if existing is None:
            session.add(DriftReference(model_id=model_id, version=version, source=source, created_at=clock.now(),
                                       profile=profile.to_dict()))
        else:
            existing.source, existing.profile, existing.created_at = source, profile.to_dict(), clock.now()
    log.info("drift reference of %s %s stored (%s: %d interactions, AUC %s)", model_id, version, source,
             profile.num_interactions, profile.auc)
    return profile


def get_reference(*, session: Session, model_id: str, version: str) -> Profile | None:
    row = session.scalar(sa.select(DriftReference).where(DriftReference.model_id == model_id,
                                                         DriftReference.version == version))
    return None if row is None else Profile.from_dict(row.profile)


def ensure_reference(*, registry: Registry, version: MainVersionRecord, brain: TrainedBrain,
                     config: DriftConfig = DriftConfig(), salt: str = "aivo", clock: Clock = SYSTEM_CLOCK) -> Profile:
    with registry.session(read_only=True) as session:
        profile = get_reference(session=session, model_id=MAIN_BRAIN_MODEL_ID, version=version.version)
    if profile is not None:
        return profile
    until = version.activated_at
    with registry.session(read_only=True) as session:
        try:
            data = load_interactions(session=session, until=until)
        except DataError:  # nothing timestamped before activation: use everything
            data = load_interactions(session=session)
    test = stable_split(data, salt=salt).test
    recorded = ((version.training_metrics.get("test") or {}).get("metrics") or {}).get("auc")
    return save_reference_from_data(registry=registry, model_id=MAIN_BRAIN_MODEL_ID, version=version.version,
                                    brain=brain, data=data, test=test, auc=recorded,
                                    source="interactions_before_activation", config=config, clock=clock)


def current_profile(*, registry: Registry, brain: TrainedBrain, since: datetime, until: datetime,
                    config: DriftConfig) -> Profile | None:
    """Profile of the interactions timestamped in [since, until); None when there are none."""
    with registry.session(read_only=True) as session:
        try:
            recent = load_interactions(session=session, since=since, until=until)
        except DataError:
            return None
        learners = recent.frame["learner_id"].unique().tolist()
        history = load_interactions(session=session, learner_ids=learners, until=until)
    stamps = history.frame["timestamp"]
    in_window = (stamps >= since).to_numpy() & stamps.notna().to_numpy()
    predictions, labels = scored_predictions(brain, history, in_window)
    return build_profile(recent.frame, predictions=predictions, labels=labels, config=config, top_k=None)


def check_drift(*, registry: Registry, settings: Settings, model_id: str = MAIN_BRAIN_MODEL_ID,
                window_days: float = DEFAULT_WINDOW_DAYS, config: DriftConfig = DriftConfig(),
                schedule: bool = True, clock: Clock = SYSTEM_CLOCK) -> DriftReportRecord:
    """Score the active version's drift over the last `window_days`, store the report, and (when
    `schedule`) ask for retraining above DRIFT_THRESHOLD."""
    if model_id != MAIN_BRAIN_MODEL_ID:
        raise NotFoundError(f"drift is monitored for {MAIN_BRAIN_MODEL_ID} only, not {model_id!r}")
    if window_days <= 0:
        raise DataError(f"the drift window must be positive, got {window_days} days")
    loaded = load_main_brain(registry=registry)  # NotFoundError when nothing is active
    now = clock.now()
    since = now - timedelta(days=window_days)
    reference = ensure_reference(registry=registry, version=loaded.version, brain=loaded.brain, config=config,
                                 clock=clock)
    current = current_profile(registry=registry, brain=loaded.brain, since=since, until=now, config=config)
    threshold = settings.drift_threshold
    details: dict[str, Any] = {"reference": {"interactions": reference.num_interactions,
                                             "learners": reference.num_learners, "auc": reference.auc},
                               "window_days": window_days, "config": {"top_k": config.top_k,
                                                                      "min_samples": config.min_samples,
                                                                      "weights": list(config.weights)}}
    if current is None:
        signals: dict[str, Any] = {"input": None, "prediction": None, "performance": None, "score": None,
                                   "components": {}}
        details["current"] = {"interactions": 0, "learners": 0}
        details["note"] = "no interactions in the window: drift not measurable"
    else:
        signals = compare_profiles(reference, current, config=config).to_dict()
        details["current"] = {"interactions": current.num_interactions, "learners": current.num_learners,
                              "auc": current.auc, "scored": current.num_predictions}
    score = signals["score"]
    drifted = score is not None and score > threshold
    action: dict[str, Any] = {"scheduled": False}
    if drifted and schedule:
        decision = schedule_retraining(registry=registry, settings=settings, model_id=model_id,
                                       reason=f"drift_detected_score_{score:.3f}", priority="normal",
                                       created_by="drift-monitor", clock=clock)
        action = {"scheduled": decision.status == "queued", "status": decision.status, "reason": decision.reason,
                  "job_id": decision.job.id if decision.job else None}
    with registry.session() as session:
        row = DriftReport(model_id=model_id, version=loaded.version.version, computed_at=now, window_start=since,
                          window_end=now, score=score, threshold=threshold, drifted=drifted, signals=signals,
                          action=action, details=details)
        session.add(row)
        session.flush()
        record = _record(row)
    mark = "DRIFT" if drifted else "ok"
    log.info("Model %s (%s): drift_score=%s %s", model_id, loaded.version.version,
             "n/a" if score is None else f"{score:.3f}", mark)
    return record


def list_drift_reports(*, session: Session, model_id: str, limit: int = 20) -> list[DriftReportRecord]:
    """Reports of a model family (`aivo-main-brain`) or one of its versions, newest first."""
    stmt = sa.select(DriftReport).order_by(DriftReport.computed_at.desc(), DriftReport.id.desc()).limit(limit)
    if model_id == MAIN_BRAIN_MODEL_ID:
        stmt = stmt.where(DriftReport.model_id == model_id)
    else:
        try:
            get_main_version(session=session, version=model_id)
        except NotFoundError:
            raise NotFoundError(f"unknown model {model_id!r}: use {MAIN_BRAIN_MODEL_ID} or a main version name") from None
        stmt = stmt.where(DriftReport.version == model_id)
    return [_record(r) for r in session.scalars(stmt)]


def drift_reports(*, registry: Registry, model_id: str, limit: int = 20) -> list[DriftReportRecord]:
    """Stored drift reports of `model_id` (the family or a version), newest first (GET
    /v1/model/{id}/drift, aivo drift reports)."""
    return registry.run(lambda session: list_drift_reports(session=session, model_id=model_id, limit=limit),
                        read_only=True)
