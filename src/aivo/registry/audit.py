"""The audit log: promotions, rollbacks, deletions and other privileged changes.

Entries never hold personal data: no learner pseudonyms, only counts and version names.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.registry.tables import AuditEntry
from aivo.registry.records import AuditRecord


def default_actor() -> str:
    """Who is acting when no one says: the OS user (CLI); services pass their caller."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return os.environ.get("USER", "unknown")


def write_audit(*, session: Session, actor: str, action: str, reason: str = "",
                target: str | None = None, details: dict[str, Any] | None = None,
                clock: Clock = SYSTEM_CLOCK) -> None:
    """Add an entry to the caller's transaction (it commits or rolls back with the change)."""
    session.add(AuditEntry(at=clock.now(), actor=actor, action=action, target=target,
                           reason=reason or "", details=details or {}))


def list_audit(*, session: Session, action: str | None = None, limit: int = 50) -> list[AuditRecord]:
    stmt = sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    return [AuditRecord(id=e.id, at=e.at, actor=e.actor, action=e.action, target=e.target,
                        reason=e.reason, details=dict(e.details or {}))
            for e in session.scalars(stmt)]
