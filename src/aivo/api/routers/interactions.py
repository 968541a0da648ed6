"""POST /v1/interactions: batch ingest."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, status

from aivo.api.deps import ClockDep, RegistryDep, ServiceKey, SettingsDep
from aivo.api.schemas.common import ERROR_RESPONSES, ErrorResponse
from aivo.api.state import notify_ingest
from aivo.api.schemas.interactions import IngestPublic, InteractionBatchCreate, InteractionCreate
from aivo.services.ingest import ingest_interactions

log = logging.getLogger(__name__)
router = APIRouter(tags=["interactions"])
_FIELDS = tuple(InteractionCreate.model_fields)


@router.post("/v1/interactions", response_model=IngestPublic, status_code=status.HTTP_201_CREATED,
             summary="Ingest a batch of interactions", responses={
                 **ERROR_RESPONSES,
                 400: {"model": ErrorResponse, "description": "Malformed JSON."},
                 409: {"model": ErrorResponse, "description": "A learner belongs to another tenant."},
                 413: {"model": ErrorResponse, "description": "More than AIVO_MAX_INGEST_BATCH interactions."},
                 422: {"model": ErrorResponse, "description": "An interaction is invalid (nothing is stored)."}})
def ingest(body: InteractionBatchCreate, request: Request, registry: RegistryDep, settings: SettingsDep,
           clock: ClockDep, key: ServiceKey) -> IngestPublic:
    """Validated as a whole and stored in one transaction: one bad interaction and nothing is
    stored. New learners are created in the key's tenant. Learner ids are pseudonymized on
    arrival; free text in `extra` is PII-scrubbed. Resending an interaction (same learner and
    `order`) is ignored, so a failed request can be retried as it is. Needs an admin or
    service key."""
    rows = body.interactions
    columns = {name: [getattr(row, name) for row in rows] for name in _FIELDS}
    outcome = ingest_interactions(registry=registry, settings=settings, columns=columns, tenant=key.tenant,
                                  clock=clock, source=f"api:{key.key_id}")
    result = outcome.result
    state = request.app.state
    state.metrics.ingested.inc(result.rows_inserted)
    state.api_stats.add_ingest(rows=result.rows_inserted)
    if result.rows_inserted:
        notify_ingest(state, outcome.learner_ids)
    return IngestPublic(received=result.rows_read, inserted=result.rows_inserted, skipped=result.rows_skipped,
                        learners=result.learners, learners_created=result.learners_created, tenant=result.tenant)
