"""Learners: list, status, export, erasure (and the baseline endpoint when cloning is available)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool

from aivo.api.deps import (AdminKey, ClockDep, CurrentKey, LearnerDep, LearnerIdPath, RegistryDep, ServiceKey,
                           SettingsDep, pseudonym_from_raw)
from aivo.api.schemas.common import ERROR_RESPONSES, LEARNER_ERRORS, MAX_OFFSET
from aivo.api.schemas.common import ErrorResponse
from aivo.api.schemas.interactions import AttemptFields
from aivo.api.schemas.learners import (BaselineClonePublic, BaselineCreate, BaselinePublic, BaselineTrainingPublic, LearnerDeletedPublic,
                                       LearnerModelPublic, LearnerPublic, LearnerSummaryPublic, PrivacyPublic,
                                       SkillBaselinePublic)
from aivo.api.state import forget_learner
from aivo.services.api_keys import check_learner_access, learner_tenant
from aivo.services.baseline import complete_baseline
from aivo.services.learner_status import learner_status
from aivo.services.learners import erase_learner as erase, export_learner_data, learners_visible_to

log = logging.getLogger(__name__)
router = APIRouter(tags=["learners"])


@router.get("/v1/learners", response_model=list[LearnerSummaryPublic], summary="Learners this key may read",
            responses=ERROR_RESPONSES)
def list_tenant_learners(registry: RegistryDep, key: CurrentKey,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                         offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> list[LearnerSummaryPublic]:
    """Admin and service keys: every learner of the key's tenant. Teacher keys: their class list."""
    return [LearnerSummaryPublic(**r.to_dict())
            for r in learners_visible_to(registry=registry, key=key, limit=limit, offset=offset)]


@router.get("/v1/learners/{learner_id}", response_model=LearnerPublic, summary="A learner's status",
            responses=LEARNER_ERRORS)
def get_learner_status(registry: RegistryDep, settings: SettingsDep, key: CurrentKey,
                       learner: LearnerDep) -> LearnerPublic:
    """Data held, personal models (status, metrics, record-level epsilon) and user-level privacy
    spent. Teacher keys: learners on their class list only."""
    status = learner_status(registry=registry, settings=settings, learner_id=learner.pseudonym)
    return LearnerPublic(
        learner_id=status.learner.learner_id, tenant=status.learner.tenant, created_at=status.learner.created_at,
        num_interactions=status.num_interactions, last_interaction_at=status.last_interaction_at,
        models=[LearnerModelPublic(**vars(m)) for m in status.models],
        privacy=PrivacyPublic(**{k: status.privacy[k] for k in PrivacyPublic.model_fields}))


@router.delete("/v1/learners/{learner_id}", response_model=LearnerDeletedPublic, summary="Erase a learner",
               responses=LEARNER_ERRORS)
def erase_learner(request: Request, registry: RegistryDep, clock: ClockDep, key: AdminKey, learner: LearnerDep,
                  reason: Annotated[str, Query(max_length=1000, description="Kept in the audit log.")] = "",
                  ) -> LearnerDeletedPublic:
    """Deletes the learner's interactions, models, sessions, ledger and artifacts. The audit log
    keeps counts and the tenant, never the pseudonym. Admin keys only."""
    result = erase(registry=registry, learner_id=learner.pseudonym, actor=f"apikey:{key.key_id}", reason=reason,
                   clock=clock)
    forget_learner(request.app.state, learner_pk=learner.pk, pseudonym=learner.pseudonym)
    return LearnerDeletedPublic(rows_deleted=result.rows_deleted, artifacts_deleted=result.artifacts_scheduled)


@router.get("/v1/learners/{learner_id}/export", summary="Everything held about a learner",
            responses={**LEARNER_ERRORS, 200: {"description": "The export document (format aivo-learner-export)."}})
def export(registry: RegistryDep, clock: ClockDep, key: AdminKey, learner: LearnerDep,
           inline_artifacts: Annotated[bool, Query(description="Include artifact bytes (base64).")] = False,
           ) -> dict[str, Any]:
    """Every row of the learner in every table, and their artifacts. Admin keys only."""
    return export_learner_data(registry=registry, learner_id=learner.pseudonym, inline_artifacts=inline_artifacts,
                               clock=clock)


_ATTEMPT_FIELDS = tuple(AttemptFields.model_fields)


@router.post("/v1/learners/{learner_id}/baseline", response_model=BaselinePublic,
             status_code=status.HTTP_202_ACCEPTED, summary="Baseline assessment: store it, provision the clone",
             responses={**LEARNER_ERRORS, 409: {"model": ErrorResponse, "description": "No active Main Brain."},
                        422: {"model": ErrorResponse, "description": "An answer is invalid (nothing is stored)."}})
async def baseline(request: Request, body: BaselineCreate, registry: RegistryDep, settings: SettingsDep,
                   clock: ClockDep, key: ServiceKey,
                   learner_id: LearnerIdPath,
                   ) -> BaselinePublic:
    """Stores the answers as the learner's interactions (a new learner is created in the key's
    tenant), provisions the learner's clone of the active Main Brain (kept if it exists, unless
    `reset_clone`), and queues its first local training as a trainer job (202: training runs in
    a worker; follow `training.job_id`). Admin or service keys."""
    pseudonym = pseudonym_from_raw(request.app.state, learner_id)
    tenant = await run_in_threadpool(learner_tenant, registry=registry, pseudonym=pseudonym)
    if tenant is not None:
        check_learner_access(key, tenant=tenant, linked=False)
    answers = {name: [getattr(a, name) for a in body.answers] for name in _ATTEMPT_FIELDS}
    result = await run_in_threadpool(lambda: complete_baseline(
        registry=registry, settings=settings, learner_id=learner_id, answers=answers, tenant=key.tenant,
        actor=f"apikey:{key.key_id}", reset_clone=body.reset_clone, clock=clock))
    clone = result.clone
    return BaselinePublic(
        learner_id=result.learner_id, answers=result.answers, correct_rate=result.correct_rate,
        skills=[SkillBaselinePublic(**vars(s)) for s in result.skills], stored=result.stored.rows_inserted,
        clone=BaselineClonePublic(kind=clone.kind, status=clone.status, source_version=clone.source_version,
                                  created=result.clone_created),
        training=BaselineTrainingPublic(status=result.training_status, job_id=result.training_job_id,
                                        reason=result.training_reason))
