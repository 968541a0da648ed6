"""Drift reports of the Main Brain, as stored by each drift check (scheduled every
DRIFT_CHECK_INTERVAL_HOURS, or `aivo drift check`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from aivo.api.deps import RegistryDep, ServiceKey, SettingsDep
from aivo.api.schemas.common import ERROR_RESPONSES, ErrorResponse
from aivo.api.schemas.training import DriftPublic, DriftReportPublic
from aivo.services.drift import drift_reports
from aivo.training.runs import MAIN_BRAIN_MODEL_ID

router = APIRouter(tags=["models"])


@router.get("/v1/model/{model_id}/drift", response_model=DriftPublic, summary="A model's drift reports",
            responses={**ERROR_RESPONSES, 404: {"model": ErrorResponse, "description": "Unknown model."}})
def drift(registry: RegistryDep, settings: SettingsDep, key: ServiceKey,
          model_id: Annotated[str, Path(description=f"`{MAIN_BRAIN_MODEL_ID}` (or `active`), or a version name.")],
          limit: Annotated[int, Query(ge=1, le=200)] = 10) -> DriftPublic:
    """Newest first: the drift score (input, prediction and performance signals combined), its
    components (PSI, Jensen-Shannon, KS) and whether retraining was scheduled."""
    family = MAIN_BRAIN_MODEL_ID if model_id == "active" else model_id
    reports = drift_reports(registry=registry, model_id=family, limit=limit)
    public = [DriftReportPublic(**r.to_dict()) for r in reports]
    return DriftPublic(model_id=model_id, threshold=settings.drift_threshold, latest=public[0] if public else None,
                       reports=public)
