"""Federated aggregation rounds (the aggregate endpoint is mounted from aivo.federated when present)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from aivo.api.deps import RegistryDep, ServiceKey
from aivo.api.schemas.common import ERROR_RESPONSES
from aivo.api.schemas.federated import FederatedUpdatePublic
from aivo.registry import list_federated_updates

router = APIRouter(tags=["federated"])


@router.get("/v1/federated/updates", response_model=list[FederatedUpdatePublic],
            summary="Aggregation rounds, newest first", responses=ERROR_RESPONSES)
def updates(registry: RegistryDep, key: ServiceKey,
            status: Annotated[Literal["applied", "rejected", "failed"] | None, Query()] = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 50,
            offset: Annotated[int, Query(ge=0)] = 0) -> list[FederatedUpdatePublic]:
    """Versions before and after, strategy, contributors, metrics before and after, improvement,
    and the round's privacy figures (epsilon, delta, noise multiplier, sampling rate, clip norm)."""
    records = registry.run(lambda session: list_federated_updates(session=session, status=status, limit=limit,
                                                                  offset=offset), read_only=True)
    return [FederatedUpdatePublic(**r.to_dict()) for r in records]
