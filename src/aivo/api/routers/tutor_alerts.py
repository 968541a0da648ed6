"""GET /v1/tutor/alerts and POST /v1/tutor/alerts/{alert_id}/acknowledge: the school's safety alerts.

A self-harm message to the tutor raises an alert (aivo.tutor.alerts). Admin and counsellor keys
see their tenant's alerts, teacher keys those of their class list; service keys get 403."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from aivo.api.deps import ClockDep, CurrentKey, RegistryDep
from aivo.api.schemas.common import MAX_INT32, MAX_OFFSET
from aivo.services.tutor_alerts import acknowledge_for_key, alerts_for_key

router = APIRouter(tags=["tutor"])


class SafetyAlertPublic(BaseModel):
    id: int
    learner_id: str | None  # the pseudonym; null when the message named no known learner
    category: str
    stage: str
    detector: str
    excerpt: str
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None


def _public(record) -> SafetyAlertPublic:
    return SafetyAlertPublic(id=record.id, learner_id=record.learner_id, category=record.category,
                             stage=record.stage, detector=record.detector, excerpt=record.excerpt,
                             created_at=record.created_at, acknowledged_at=record.acknowledged_at,
                             acknowledged_by=record.acknowledged_by)


@router.get("/v1/tutor/alerts", response_model=list[SafetyAlertPublic], summary="Safety alerts of the school")
def list_safety_alerts(registry: RegistryDep, key: CurrentKey, clock: ClockDep,
                       include_acknowledged: Annotated[bool, Query()] = False,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                       offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> list[SafetyAlertPublic]:
    """Newest first; open alerts only unless `include_acknowledged`. Every read is audited."""
    return [_public(r) for r in alerts_for_key(registry=registry, key=key, include_acknowledged=include_acknowledged,
                                               limit=limit, offset=offset, clock=clock)]


@router.post("/v1/tutor/alerts/{alert_id}/acknowledge", response_model=SafetyAlertPublic,
             summary="Mark a safety alert as handled")
def acknowledge_safety_alert(registry: RegistryDep, key: CurrentKey, clock: ClockDep,
                             alert_id: Annotated[int, Path(ge=1, le=MAX_INT32)]) -> SafetyAlertPublic:
    return _public(acknowledge_for_key(registry=registry, key=key, alert_id=alert_id, clock=clock))
