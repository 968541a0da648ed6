"""Federation across sites (revision 0007; repository functions in `aivo.registry.sites`).

* `federation_sites` (the coordinator's registry): the sites enrolled in the federation, each
  with the public key it signs with (and authenticates its SuperNode with). Revoked sites stay
  listed (status `revoked`) so that old round records keep their meaning.
* `site_rounds` (a site's registry): what this site did and sent in each federated round: its
  pool, sampled and accepted counts, and the payload it uploaded (stored as an artifact in the
  site's own store, so the site can audit exactly what left it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from aivo.registry.tables.base import Base
from aivo.registry.types import SHA256, JSONDict, UTCDateTime

SITE_STATUSES = ("enrolled", "revoked")
SITE_ROUND_STATUSES = ("sent", "refused")


class FederationSite(Base):
    __tablename__ = "federation_sites"
    __table_args__ = (sa.CheckConstraint("status IN ('enrolled', 'revoked')", name="status"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    public_key: Mapped[str] = mapped_column(sa.Text)  # OpenSSH line
    fingerprint: Mapped[str] = mapped_column(sa.String(64))  # sha256 of the key's DER encoding
    status: Mapped[str] = mapped_column(sa.String(16), default="enrolled")
    enrolled_by: Mapped[str | None] = mapped_column(sa.String(128))
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    details: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)


class SiteRound(Base):
    __tablename__ = "site_rounds"
    __table_args__ = (sa.CheckConstraint("status IN ('sent', 'refused')", name="status"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    round_ref: Mapped[str] = mapped_column(sa.String(128))  # the coordinator's round reference
    version: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    num_pool: Mapped[int] = mapped_column(sa.Integer, default=0)
    num_sampled: Mapped[int] = mapped_column(sa.Integer, default=0)
    num_accepted: Mapped[int] = mapped_column(sa.Integer, default=0)
    weight_total: Mapped[float] = mapped_column(sa.Float, default=0.0)
    payload_norm: Mapped[float | None] = mapped_column(sa.Float)
    payload_artifact_sha256: Mapped[str | None] = mapped_column(SHA256)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    seconds: Mapped[float] = mapped_column(sa.Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
