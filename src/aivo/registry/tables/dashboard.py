"""The dashboard's server-side sessions (revision 0008). Repository functions:
`aivo.registry.dashboard_sessions`; the use case (login, CSRF, logout): `aivo.services.dashboard_sessions`.

A person logs in once with an API key; the browser then holds only an opaque, random session id
(256 bits) in an HttpOnly cookie. The table stores the SHA-256 of that id, never the id itself
and never the API key, with an absolute expiry, the last time it was seen (idle timeout) and
when it was revoked (logout). A session dies with its key: revoking or deleting the key ends it.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from aivo.registry.tables.base import Base
from aivo.registry.types import UTCDateTime


class DashboardSession(Base):
    __tablename__ = "dashboard_sessions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    session_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)  # hex SHA-256 of the cookie's id
    api_key_id: Mapped[int] = mapped_column(sa.ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)  # absolute end
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())  # idle timeout; written once a minute at most
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # logout
