"""Safety alerts: a self-harm message raises an alert for the learner's school (revision 0006).

An alert holds what a counsellor needs to act and no more: the learner (registry row, i.e. the
pseudonym, never the school's raw id), the tenant (the school), the category, the stage, when,
and a short excerpt (at most `EXCERPT_CHARS` characters of the message, or the phrase a rule
matched). Alerts cascade with the learner (erasure removes them). Creating, listing and
acknowledging alerts are audited; the audit entries carry the alert id and counts, never the
learner or the text.

Who sees them (enforced by the API): admin and counsellor keys see every alert of their
tenant; a teacher key sees the alerts of the learners on its class list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import ConflictError, DataError, NotFoundError
from aivo.registry.audit import write_audit
from aivo.registry.tables import DEFAULT_TENANT, ApiKeyLearner, Learner, SafetyAlert
from aivo.registry.tables.tutor import EXCERPT_CHARS

ALERT_STAGES = ("input", "output")


@dataclass(frozen=True)
class AlertRecord:
    id: int
    tenant: str
    learner_id: str | None  # the pseudonym
    category: str
    stage: str
    detector: str
    excerpt: str
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None


def excerpt_of(text: str, matched: str | None = None) -> str:
    """The least text that still tells a counsellor what was said."""
    source = matched if matched else " ".join(text.split())
    return source if len(source) <= EXCERPT_CHARS else source[:EXCERPT_CHARS - 1] + "\u2026"


def record_alert(*, session: Session, learner_pseudonym: str | None, category: str, stage: str, detector: str,
                 text: str, matched: str | None = None, tenant: str | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> int:
    """Add an alert (and its audit entry) to the caller's transaction; returns its id.

    The tenant is the learner's; without a known learner, `tenant` (default tenant if None)."""
    if stage not in ALERT_STAGES:
        raise DataError(f"alert stage must be one of {ALERT_STAGES}, got {stage!r}")
    learner = None
    if learner_pseudonym:
        learner = session.execute(sa.select(Learner.id, Learner.tenant)
                                  .where(Learner.pseudonym == learner_pseudonym)).first()
    alert = SafetyAlert(tenant=learner.tenant if learner else (tenant or DEFAULT_TENANT),
                        learner_id=learner.id if learner else None, category=category, stage=stage,
                        detector=detector, excerpt=excerpt_of(text, matched), created_at=clock.now())
    session.add(alert)
    session.flush()
    write_audit(session=session, actor="aivo tutor", action="tutor.safety_alert.raised", target=f"alert:{alert.id}",
                details={"category": category, "stage": stage, "detector": detector,
                         "known_learner": learner is not None}, clock=clock)
    return alert.id


_SELECT = (sa.select(SafetyAlert, Learner.pseudonym)
           .join(Learner, Learner.id == SafetyAlert.learner_id, isouter=True))


def _record(row) -> AlertRecord:
    alert, pseudonym = row
    return AlertRecord(id=alert.id, tenant=alert.tenant, learner_id=pseudonym, category=alert.category,
                       stage=alert.stage, detector=alert.detector, excerpt=alert.excerpt,
                       created_at=alert.created_at, acknowledged_at=alert.acknowledged_at,
                       acknowledged_by=alert.acknowledged_by)


def list_alerts(*, session: Session, tenant: str, teacher_key_pk: int | None = None,
                include_acknowledged: bool = False, limit: int = 100, offset: int = 0,
                actor: str = "unknown", clock: Clock = SYSTEM_CLOCK) -> list[AlertRecord]:
    """A tenant's alerts, newest first; with `teacher_key_pk`, only its class list's learners.
    The read itself is audited (who looked, how many alerts)."""
    stmt = _SELECT.where(SafetyAlert.tenant == tenant).order_by(SafetyAlert.id.desc()).limit(limit).offset(offset)
    if not include_acknowledged:
        stmt = stmt.where(SafetyAlert.acknowledged_at.is_(None))
    if teacher_key_pk is not None:
        linked = sa.select(ApiKeyLearner.learner_id).where(ApiKeyLearner.api_key_id == teacher_key_pk)
        stmt = stmt.where(SafetyAlert.learner_id.in_(linked))
    records = [_record(row) for row in session.execute(stmt)]
    write_audit(session=session, actor=actor, action="tutor.safety_alert.listed", target=f"tenant:{tenant}",
                details={"count": len(records), "include_acknowledged": include_acknowledged}, clock=clock)
    return records


def get_alert(*, session: Session, alert_id: int, tenant: str) -> AlertRecord:
    row = session.execute(_SELECT.where(SafetyAlert.id == alert_id, SafetyAlert.tenant == tenant)).first()
    if row is None:
        raise NotFoundError(f"no safety alert {alert_id} in this tenant")
    return _record(row)


def acknowledge_alert(*, session: Session, alert_id: int, tenant: str, actor: str,
                      clock: Clock = SYSTEM_CLOCK) -> AlertRecord:
    alert = session.scalar(sa.select(SafetyAlert).where(SafetyAlert.id == alert_id, SafetyAlert.tenant == tenant)
                           .with_for_update())
    if alert is None:
        raise NotFoundError(f"no safety alert {alert_id} in this tenant")
    if alert.acknowledged_at is not None:
        raise ConflictError(f"safety alert {alert_id} was already acknowledged by {alert.acknowledged_by}")
    alert.acknowledged_at = clock.now()
    alert.acknowledged_by = actor[:128]
    session.flush()
    write_audit(session=session, actor=actor, action="tutor.safety_alert.acknowledged", target=f"alert:{alert_id}",
                details={}, clock=clock)
    return get_alert(session=session, alert_id=alert_id, tenant=tenant)
