"""The coordinator of a federation across sites: status, rounds, sites (enroll, revoke), runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.concurrency import run_in_threadpool

from aivo.api.deps import AdminKey, RegistryDep, ServiceKey, SettingsDep
from aivo.api.schemas.common import ERROR_RESPONSES, ErrorResponse
from aivo.api.schemas.federation import (
    FederationRound,
    FederationRunCreate,
    FederationRunPublic,
    FederationStatusPublic,
    SiteEnroll,
    SitePublic,
)
from aivo.services.federation import (
    enroll_site,
    federation_status,
    options_from_settings,
    revoke_site,
    submit_federation_run,
)

router = APIRouter(tags=["federation"])


def _site(record) -> SitePublic:
    data = record.to_dict()
    data.pop("public_key", None)
    return SitePublic(**data)


@router.get("/v1/federation/status", response_model=FederationStatusPublic, responses=ERROR_RESPONSES,
            summary="Enrolled sites, recent rounds, version and the federation's epsilon")
def status_(registry: RegistryDep, key: ServiceKey,
            limit: Annotated[int, Query(ge=1, le=500)] = 20) -> FederationStatusPublic:
    return FederationStatusPublic(**federation_status(registry=registry, limit=limit).to_dict())


@router.get("/v1/federation/rounds", response_model=list[FederationRound], responses=ERROR_RESPONSES,
            summary="Rounds across sites, newest first")
def rounds(registry: RegistryDep, key: ServiceKey,
           limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[FederationRound]:
    """Each round's status and reason, every site's status and reason, counts, the federated
    evaluation's AUC before and after, and the round's epsilon."""
    return [FederationRound(**r) for r in federation_status(registry=registry, limit=limit).rounds]


@router.get("/v1/federation/sites", response_model=list[SitePublic], responses=ERROR_RESPONSES,
            summary="Enrolled and revoked sites")
def sites(registry: RegistryDep, key: ServiceKey) -> list[SitePublic]:
    return [SitePublic(**s) for s in federation_status(registry=registry, limit=1).sites]


@router.post("/v1/federation/sites", response_model=SitePublic, status_code=status.HTTP_201_CREATED,
             summary="Enroll a site", responses={**ERROR_RESPONSES, 409: {"model": ErrorResponse,
                                                                          "description": "Enrolled with another key."}})
def enroll(body: SiteEnroll, registry: RegistryDep, key: AdminKey) -> SitePublic:
    """Only enrolled sites take part in rounds: each round, a site signs the coordinator's nonce
    with this key. Register the key with the SuperLink too (`aivo federation enroll --register`)."""
    return _site(enroll_site(registry=registry, name=body.name, public_key=body.public_key,
                             actor=f"apikey:{key.key_id}"))


@router.delete("/v1/federation/sites/{name}", response_model=SitePublic, summary="Revoke a site",
               responses={**ERROR_RESPONSES, 404: {"model": ErrorResponse, "description": "No such site."}})
def revoke(name: str, registry: RegistryDep, key: AdminKey) -> SitePublic:
    return _site(revoke_site(registry=registry, name=name, actor=f"apikey:{key.key_id}"))


@router.post("/v1/federation/runs", response_model=FederationRunPublic, status_code=status.HTTP_202_ACCEPTED,
             summary="Start federated rounds on the SuperLink",
             responses={**ERROR_RESPONSES, 422: {"model": ErrorResponse, "description": "Invalid options."},
                        409: {"model": ErrorResponse,
                              "description": "This registry holds interactions: a coordinator holds none (use a "
                                             "separate AIVO_HOME for the coordinator)."}})
async def run(body: FederationRunCreate, registry: RegistryDep, settings: SettingsDep,
              key: AdminKey) -> FederationRunPublic:
    """Submits a run to the SuperLink (AIVO_SUPERLINK, AIVO_FEDERATION_ROOT_CERTIFICATES) with the
    AIVO_* settings; the SuperLink's ServerApp runs the rounds (202)."""
    options = options_from_settings(settings, rounds=body.rounds, min_sites=body.min_sites,
                                    secure_aggregation=body.secure_aggregation)
    run_id = await run_in_threadpool(lambda: submit_federation_run(registry=registry, settings=settings,
                                                                   options=options, actor=f"apikey:{key.key_id}"))
    return FederationRunPublic(run_id=run_id)
