"""Federated aggregation: run a round (queued as a trainer job, or a dry run now) and list rounds."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status
from fastapi.concurrency import run_in_threadpool

from aivo.api.deps import AdminKey, ClockDep, RegistryDep, ServiceKey, SettingsDep
from aivo.api.schemas.common import ERROR_RESPONSES, ErrorResponse, MAX_OFFSET
from aivo.api.schemas.federated import AggregateCreate, AggregatePublic, AggregationJobPublic, FederatedUpdatePublic
from aivo.errors import ConfigError, DataError
from aivo.services.aggregation import AggregationOptions, list_rounds, queue_round, run_aggregation

router = APIRouter(tags=["federated"])


@router.get("/v1/federated/updates", response_model=list[FederatedUpdatePublic],
            summary="Aggregation rounds, newest first", responses=ERROR_RESPONSES)
def updates(registry: RegistryDep, key: ServiceKey,
            status: Annotated[Literal["applied", "rejected", "failed"] | None, Query()] = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 50,
            offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> list[FederatedUpdatePublic]:
    """Versions before and after, strategy, contributors, metrics before and after, improvement,
    and the round's privacy figures (epsilon, delta, noise multiplier, sampling rate, clip norm)."""
    records = list_rounds(registry=registry, status=status, limit=limit, offset=offset)
    return [FederatedUpdatePublic(**r.to_dict()) for r in records]


@router.post("/v1/federated/aggregate", response_model=AggregatePublic, status_code=status.HTTP_202_ACCEPTED,
             summary="Run a federated round (queued), or a dry run (now)",
             responses={**ERROR_RESPONSES, 200: {"model": AggregatePublic, "description": "Dry run: the report."},
                        409: {"model": ErrorResponse, "description": "No active Main Brain."},
                        422: {"model": ErrorResponse, "description": "Invalid options."}})
async def aggregate(body: AggregateCreate, response: Response, registry: RegistryDep, settings: SettingsDep,
                    clock: ClockDep, key: AdminKey) -> AggregatePublic:
    """A real round is queued as a `federated` trainer job (202; aggregation runs in a worker, with
    the AIVO_* settings) and changes the Main Brain only if the gate passes. A dry run computes the
    round now (it may take seconds) and returns its report without registering, promoting or
    charging any privacy budget (200). Admin keys only."""
    actor = f"apikey:{key.key_id}"
    overrides = {"strategy": body.strategy, "min_learners": body.min_learners, "max_stale_days": body.max_stale_days}
    if not body.dry_run:
        given = sorted(k for k, v in overrides.items() if v is not None)
        if given:
            raise DataError(f"{', '.join(given)} apply to dry runs only; a queued round uses the AIVO_* settings")
        decision = await run_in_threadpool(lambda: queue_round(registry=registry, settings=settings,
                                                               reason=body.reason, actor=actor, clock=clock))
        return AggregatePublic(dry_run=False, job=AggregationJobPublic(
            status=decision.status, job_id=decision.job.id if decision.job else None, reason=decision.reason))
    try:
        options = AggregationOptions.from_settings(settings, dry_run=True, **overrides)
    except ConfigError as exc:  # here the options come from the request: the caller's mistake
        raise DataError(exc.message) from None
    report = await run_in_threadpool(lambda: run_aggregation(registry=registry, options=options, actor=actor,
                                                             clock=clock))
    response.status_code = status.HTTP_200_OK
    return AggregatePublic(dry_run=True, report=report.to_dict())
