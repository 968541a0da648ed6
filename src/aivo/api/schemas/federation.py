"""Schemas of the federation endpoints (the coordinator of a federation across sites)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SitePublic(BaseModel):
    name: str
    fingerprint: str = Field(description="sha256 of the site's public key (DER), hex")
    status: str = Field(description="enrolled | revoked")
    enrolled_at: str
    enrolled_by: str | None = None
    revoked_at: str | None = None


class SiteEnroll(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="The site's name, as given to `aivo site init`.")
    public_key: str = Field(min_length=1, max_length=4096, description="The site's OpenSSH public key (site.pub).")


class FederationRound(BaseModel):
    federated_update_id: int
    round: int | None = None
    status: str
    message: str | None = None
    version_before: str
    version_after: str | None = None
    counts: dict[str, Any] | None = None
    sites: list[dict[str, Any]] | None = Field(None, description="Every connected node: site, status, reason.")
    auc_before: float | None = None
    auc_after: float | None = None
    epsilon_round: float | None = None
    epsilon_federation: float | None = None
    created_at: str


class FederationStatusPublic(BaseModel):
    version: str | None = Field(description="The coordinator's active Main Brain version.")
    sites: list[SitePublic]
    rounds: list[FederationRound]
    epsilon_federation: float | None = Field(description="User-level epsilon of a learner eligible in every DP round.")
    interactions: int = Field(description="Interaction rows held by the coordinator (0 in federated mode).")


class FederationRunCreate(BaseModel):
    rounds: int = Field(1, ge=1, le=1000)
    min_sites: int = Field(2, ge=1)
    secure_aggregation: bool = True
    reason: str = Field("", max_length=500)


class FederationRunPublic(BaseModel):
    run_id: str = Field(description="Flower's run id; the rounds appear under /v1/federation/rounds as they finish.")
