"""Schemas of the federation endpoints (the coordinator of a federation across sites)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from aivo.api.schemas.common import RequestModel
from aivo.utils import JsonInt

MAX_SITES = 10_000  # sites of one federation a run may wait for

# The shape of a site's key line, as the OpenAPI document states it and the request model checks it
# (ASCII classes only: Python and JSON Schema regexes read them alike): an elliptic-curve key type,
# blanks, then the key's base64. Whether the base64 holds a valid key only the key parser can tell
# (aivo.sites.identity.parse_public_key: 422 with its reason).
PUBLIC_KEY_LINE = r"^[ \t\r\n]*ecdsa-sha2-nistp(256|384|521)(-cert-v01@openssh\.com)?[ \t]+[A-Za-z0-9+/]"
_PUBLIC_KEY_LINE = re.compile(PUBLIC_KEY_LINE)


class SitePublic(BaseModel):
    name: str
    fingerprint: str = Field(description="sha256 of the site's public key (DER), hex")
    status: str = Field(description="enrolled | revoked")
    enrolled_at: str
    enrolled_by: str | None = None
    revoked_at: str | None = None


class SiteEnroll(RequestModel):
    name: str = Field(min_length=1, max_length=64, description="The site's name, as given to `aivo site init`.")
    public_key: str = Field(
        min_length=1, max_length=4096, json_schema_extra={"pattern": PUBLIC_KEY_LINE},
        description="The site's OpenSSH public key line (site.pub): `ecdsa-sha2-nistp384 AAAA... [comment]`. The "
                    "key itself must also decode to an elliptic-curve key (answered 422 with the reason if not).")

    @field_validator("public_key")
    @classmethod
    def _key_line(cls, value: str) -> str:
        if not _PUBLIC_KEY_LINE.match(value):
            raise ValueError("not an OpenSSH public key line (ecdsa-sha2-nistp384 AAAA... [comment])")
        return value


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


class FederationRunCreate(RequestModel):
    # Strict and bounded like every request body (issue 14): "3" and true are not 3, unknown fields
    # are refused, 3.0 is 3 (JSON Schema's integer), and min_sites has an upper bound.
    rounds: JsonInt = Field(1, ge=1, le=1000)
    min_sites: JsonInt = Field(2, ge=1, le=MAX_SITES,
                               description="Connected sites to wait for before each round; at least 2 with secure "
                                           "aggregation (422 otherwise).")
    secure_aggregation: bool = True
    reason: str = Field("", max_length=500)

    @model_validator(mode="after")
    def _secure_needs_two_sites(self) -> "FederationRunCreate":
        # A request's mistake, answered 422 here (the same rule in FederationOptions is a 500 for a
        # server's AIVO_* configuration); the fuzzing found it answered 500.
        if self.secure_aggregation and self.min_sites < 2:
            raise ValueError("secure aggregation needs at least 2 sites (min_sites 2 or more); with one site its "
                             "sum is the total")
        return self


class FederationRunPublic(BaseModel):
    run_id: str = Field(description="Flower's run id; the rounds appear under /v1/federation/rounds as they finish.")
