"""Main Brain versions: list, status, promote, rollback."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request

from aivo.api.deps import AdminKey, ClockDep, RegistryDep, ServiceKey
from aivo.api.schemas.common import ERROR_RESPONSES, ErrorResponse, MAX_OFFSET
from aivo.api.schemas.models import ModelStatusPublic, ModelVersionPublic, PromoteCreate, RollbackCreate
from aivo.api.state import model_details
from aivo.registry import MainVersionRecord
from aivo.services import models
from aivo.training.runs import MAIN_BRAIN_MODEL_ID

router = APIRouter(tags=["models"])

_NOT_FOUND = {404: {"model": ErrorResponse, "description": "No such version."}}
_CONFLICT = {409: {"model": ErrorResponse, "description": "Already active, or nothing to roll back to."}}


def _public(record: MainVersionRecord) -> ModelVersionPublic:
    data = record.to_dict()
    return ModelVersionPublic(**{k: data[k] for k in ModelVersionPublic.model_fields})


@router.get("/v1/models", response_model=list[ModelVersionPublic], summary="Main Brain versions, newest first",
            responses=ERROR_RESPONSES)
def list_models(registry: RegistryDep, key: ServiceKey,
                status: Annotated[Literal["candidate", "active", "archived"] | None, Query()] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> list[ModelVersionPublic]:
    return [_public(r) for r in models.list_versions(registry=registry, status=status, limit=limit, offset=offset)]


@router.get("/v1/model/{model_id}/status", response_model=ModelStatusPublic, summary="A model's status",
            responses={**ERROR_RESPONSES, **_NOT_FOUND})
def get_model_status(request: Request, registry: RegistryDep, key: ServiceKey,
                     model_id: Annotated[str, Path(description=f"A version name, or `{MAIN_BRAIN_MODEL_ID}` "
                                                               "(or `active`) for the active version.")],
                     ) -> ModelStatusPublic:
    """The version, whether it is active and loaded in this process, its test AUC, and in
    `details` what the training packages add (open training job, last training, latest drift)."""
    record = models.find_version(registry=registry, model_id=model_id)
    test = ((record.training_metrics.get("test") or {}).get("metrics") or {}) if record else {}
    state = request.app.state
    return ModelStatusPublic(
        model_id=model_id, version=_public(record) if record else None,
        active=record is not None and record.status == "active",
        loaded=record is not None and record.artifact_sha256 in state.loaded_artifacts,
        test_auc=test.get("auc"), details=model_details(state, model_id, record))


@router.post("/v1/model/{model_id}/promote", response_model=ModelVersionPublic, summary="Make a version active",
             responses={**ERROR_RESPONSES, **_NOT_FOUND, **_CONFLICT})
def promote(body: PromoteCreate, registry: RegistryDep, clock: ClockDep, key: AdminKey,
            model_id: Annotated[str, Path(description="The version to activate, e.g. aivo-main-v3.")],
            ) -> ModelVersionPublic:
    """The previous active version is archived; audited with the key and the reason. Admin only."""
    record = models.promote_version(registry=registry, version=model_id, actor=f"apikey:{key.key_id}",
                                    reason=body.reason, clock=clock)
    return _public(record)


@router.post("/v1/models/rollback", response_model=ModelVersionPublic, summary="Reactivate the previous version",
             responses={**ERROR_RESPONSES, **_NOT_FOUND, **_CONFLICT})
def rollback(body: RollbackCreate, registry: RegistryDep, clock: ClockDep, key: AdminKey) -> ModelVersionPublic:
    """Reactivates the version active before the current one (or `to_version`). Audited. Admin only."""
    record = models.rollback_version(registry=registry, actor=f"apikey:{key.key_id}", reason=body.reason,
                                     to_version=body.to_version, clock=clock)
    return _public(record)
