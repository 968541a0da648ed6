"""Repository functions for federation sites and site rounds (session injected, keyword-only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import ConflictError, DataError, NotFoundError
from aivo.registry.tables import FederationSite, SiteRound

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class SiteRecord:
    name: str
    fingerprint: str
    status: str
    enrolled_at: datetime
    enrolled_by: str | None
    revoked_at: datetime | None
    public_key: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["enrolled_at"] = self.enrolled_at.isoformat()
        out["revoked_at"] = self.revoked_at.isoformat() if self.revoked_at else None
        return out


@dataclass(frozen=True)
class SiteRoundRecord:
    id: int
    round_ref: str
    version: str
    status: str
    reason: str
    num_pool: int
    num_sampled: int
    num_accepted: int
    weight_total: float
    payload_norm: float | None
    payload_artifact_sha256: str | None
    seconds: float
    created_at: datetime
    details: dict
    settings: dict  # the round's settings as the site received them

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat()
        return out


def check_site_name(name: str) -> str:
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise DataError(f"a site name is 1-64 characters of letters, digits, '-', '_' and '.', got {name!r}")
    return name


def _site(row: FederationSite) -> SiteRecord:
    return SiteRecord(row.name, row.fingerprint, row.status, row.enrolled_at, row.enrolled_by, row.revoked_at,
                      row.public_key)


def enroll_site(*, session: Session, name: str, public_key: str, fingerprint: str, actor: str,
                clock: Clock = SYSTEM_CLOCK) -> SiteRecord:
    """Enroll a site (or re-enroll a revoked one with a new key). A name enrolled with another
    key is a conflict: revoke it first."""
    check_site_name(name)
    row = session.scalar(sa.select(FederationSite).where(FederationSite.name == name).with_for_update())
    if row is not None and row.status == "enrolled":
        if row.fingerprint == fingerprint:
            return _site(row)
        raise ConflictError(f"site {name} is enrolled with another key ({row.fingerprint[:16]}...); revoke it first")
    if row is None:
        row = FederationSite(name=name, public_key=public_key.strip(), fingerprint=fingerprint, status="enrolled",
                             enrolled_by=actor, enrolled_at=clock.now(), details={})
        session.add(row)
    else:
        row.public_key, row.fingerprint, row.status = public_key.strip(), fingerprint, "enrolled"
        row.enrolled_by, row.enrolled_at, row.revoked_at = actor, clock.now(), None
    session.flush()
    return _site(row)


def revoke_site(*, session: Session, name: str, clock: Clock = SYSTEM_CLOCK) -> SiteRecord:
    row = session.scalar(sa.select(FederationSite).where(FederationSite.name == name).with_for_update())
    if row is None:
        raise NotFoundError(f"site {name} is not enrolled")
    row.status, row.revoked_at = "revoked", clock.now()
    session.flush()
    return _site(row)


def list_sites(*, session: Session, status: str | None = None) -> list[SiteRecord]:
    stmt = sa.select(FederationSite).order_by(FederationSite.name)
    if status is not None:
        stmt = stmt.where(FederationSite.status == status)
    return [_site(row) for row in session.scalars(stmt)]


def enrolled_keys(*, session: Session) -> dict[str, str]:
    """site name -> public key of every enrolled site."""
    return dict(session.execute(sa.select(FederationSite.name, FederationSite.public_key)
                                .where(FederationSite.status == "enrolled")).all())


def record_site_round(*, session: Session, round_ref: str, version: str, status: str, reason: str = "",
                      num_pool: int = 0, num_sampled: int = 0, num_accepted: int = 0, weight_total: float = 0.0,
                      payload_norm: float | None = None, payload_artifact_sha256: str | None = None,
                      settings: dict | None = None, details: dict | None = None, seconds: float = 0.0,
                      clock: Clock = SYSTEM_CLOCK) -> SiteRoundRecord:
    row = SiteRound(round_ref=round_ref, version=version, status=status, reason=reason, num_pool=num_pool,
                    num_sampled=num_sampled, num_accepted=num_accepted, weight_total=weight_total,
                    payload_norm=payload_norm, payload_artifact_sha256=payload_artifact_sha256,
                    settings=dict(settings or {}), details=dict(details or {}), seconds=seconds,
                    created_at=clock.now())
    session.add(row)
    session.flush()
    return _site_round(row)


def _site_round(row: SiteRound) -> SiteRoundRecord:
    return SiteRoundRecord(row.id, row.round_ref, row.version, row.status, row.reason, row.num_pool, row.num_sampled,
                           row.num_accepted, row.weight_total, row.payload_norm, row.payload_artifact_sha256,
                           row.seconds, row.created_at, dict(row.details or {}), dict(row.settings or {}))


def list_site_rounds(*, session: Session, limit: int = 50) -> list[SiteRoundRecord]:
    stmt = sa.select(SiteRound).order_by(SiteRound.id.desc()).limit(limit)
    return [_site_round(row) for row in session.scalars(stmt)]
