"""Main Brain versions: register, list, promote, roll back.

One version is active at any time. The database enforces it (a partial unique index on
`status = 'active'`); promotion and rollback swap the active version inside the caller's
transaction, serialized by PostgreSQL's advisory lock or SQLite's write lock, and write an
audit entry in the same transaction: either all of it commits or none of it.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session, aliased

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import ConflictError, DataError, IntegrityError, NotFoundError
from aivo.registry.artifacts import ArtifactRef, ArtifactStore
from aivo.registry.audit import write_audit
from aivo.registry.db import dialect_name
from aivo.registry.tables import MainModelVersion
from aivo.registry.records import MainVersionRecord

VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_VERSION_PREFIX = "aivo-main-v"
_PROMOTION_LOCK_KEY = 0x41495631  # PostgreSQL advisory lock serializing promotions ("AIV1")


def _record(row: MainModelVersion, parent_version: str | None) -> MainVersionRecord:
    return MainVersionRecord(
        id=row.id, version=row.version, status=row.status, architecture=dict(row.architecture or {}),
        training_metrics=dict(row.training_metrics or {}), data_hash=row.data_hash,
        parent_version=parent_version, artifact_sha256=row.artifact_sha256, artifact_size=row.artifact_size,
        details=dict(row.details or {}), created_by=row.created_by, created_at=row.created_at,
        activated_at=row.activated_at)


def _select_with_parent():
    parent = aliased(MainModelVersion)
    stmt = sa.select(MainModelVersion, parent.version).outerjoin(parent, MainModelVersion.parent_id == parent.id)
    return stmt


def _one(session: Session, stmt) -> MainVersionRecord | None:
    row = session.execute(stmt).first()
    return None if row is None else _record(row[0], row[1])


def check_artifact_stored(store: ArtifactStore, artifact: ArtifactRef) -> None:
    """Rows are written only after their artifact is durable: refuse a reference to nothing."""
    try:
        size = store.size(artifact.sha256)
    except NotFoundError:
        size = None
    if size != artifact.size:
        raise IntegrityError(f"artifact {artifact.sha256} is not (fully) in the store {store.url}; "
                             "store it before registering it")


def register_main_version(*, session: Session, store: ArtifactStore, version: str, artifact: ArtifactRef,
                          architecture: dict[str, Any], training_metrics: dict[str, Any] | None = None,
                          data_hash: str | None = None, parent_version: str | None = None,
                          details: dict[str, Any] | None = None, created_by: str | None = None,
                          clock: Clock = SYSTEM_CLOCK) -> MainVersionRecord:
    """Add a candidate version whose weights are already in `store`. Activate it with
    `promote_main_version`."""
    if not VERSION_PATTERN.match(version or ""):
        raise DataError(f"invalid version name {version!r}: 1-64 letters, digits, '.', '_' or '-'")
    check_artifact_stored(store, artifact)
    if session.scalar(sa.select(MainModelVersion.id).where(MainModelVersion.version == version)) is not None:
        raise ConflictError(f"main version {version!r} already exists")
    parent_id = None
    if parent_version is not None:
        parent_id = session.scalar(sa.select(MainModelVersion.id).where(MainModelVersion.version == parent_version))
        if parent_id is None:
            raise NotFoundError(f"parent version {parent_version!r} does not exist")
    row = MainModelVersion(version=version, status="candidate", architecture=dict(architecture),
                           training_metrics=dict(training_metrics or {}), data_hash=data_hash,
                           parent_id=parent_id, artifact_sha256=artifact.sha256, artifact_size=artifact.size,
                           details=dict(details or {}), created_by=created_by, created_at=clock.now())
    try:
        with session.begin_nested():
            session.add(row)
    except DBIntegrityError as exc:  # a concurrent writer took the name between check and insert
        raise ConflictError(f"main version {version!r} already exists") from exc
    return _record(row, parent_version)


def next_main_version_name(*, session: Session, prefix: str = DEFAULT_VERSION_PREFIX) -> str:
    """`<prefix><n+1>` where n is the highest number already used with that prefix."""
    names = session.scalars(sa.select(MainModelVersion.version)
                            .where(MainModelVersion.version.startswith(prefix, autoescape=True)))
    numbers = [int(n[len(prefix):]) for n in names if n[len(prefix):].isdigit()]
    return f"{prefix}{max(numbers, default=0) + 1}"


def get_main_version(*, session: Session, version: str) -> MainVersionRecord:
    record = _one(session, _select_with_parent().where(MainModelVersion.version == version))
    if record is None:
        raise NotFoundError(f"main version {version!r} does not exist")
    return record


def get_active_main_version(*, session: Session) -> MainVersionRecord | None:
    return _one(session, _select_with_parent().where(MainModelVersion.status == "active"))


def list_main_versions(*, session: Session, status: str | None = None, limit: int = 100,
                       offset: int = 0) -> list[MainVersionRecord]:
    """Newest first."""
    stmt = _select_with_parent().order_by(MainModelVersion.id.desc()).limit(limit).offset(offset)
    if status is not None:
        stmt = stmt.where(MainModelVersion.status == status)
    return [_record(row, parent) for row, parent in session.execute(stmt)]


def _lock_promotions(session: Session) -> None:
    # SQLite: the write transaction (BEGIN IMMEDIATE) already excludes every other writer.
    if dialect_name(session) == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PROMOTION_LOCK_KEY})


def _activate(session: Session, *, target: MainModelVersion, action: str, actor: str, reason: str,
              clock: Clock) -> MainVersionRecord:
    previous = session.scalar(sa.select(MainModelVersion.version).where(MainModelVersion.status == "active"))
    now = clock.now()
    # Demote first, then activate: the unique index never sees two active rows.
    session.execute(sa.update(MainModelVersion).where(MainModelVersion.status == "active")
                    .values(status="archived").execution_options(synchronize_session=False))
    session.execute(sa.update(MainModelVersion).where(MainModelVersion.id == target.id)
                    .values(status="active", activated_at=now).execution_options(synchronize_session=False))
    write_audit(session=session, actor=actor, action=action, target=target.version, reason=reason,
                details={"previous_version": previous, "new_version": target.version}, clock=clock)
    session.flush()
    session.expire_all()
    return get_main_version(session=session, version=target.version)


def promote_main_version(*, session: Session, version: str, actor: str, reason: str,
                         clock: Clock = SYSTEM_CLOCK) -> MainVersionRecord:
    """Make `version` the active one; the previous active version becomes archived. Audited."""
    _lock_promotions(session)
    target = session.scalar(sa.select(MainModelVersion).where(MainModelVersion.version == version))
    if target is None:
        raise NotFoundError(f"main version {version!r} does not exist")
    if target.status == "active":
        raise ConflictError(f"main version {version!r} is already active")
    return _activate(session, target=target, action="main.promote", actor=actor, reason=reason, clock=clock)


def rollback_main_version(*, session: Session, actor: str, reason: str, to_version: str | None = None,
                          clock: Clock = SYSTEM_CLOCK) -> MainVersionRecord:
    """Reactivate `to_version`, by default the version that was active before the current one."""
    _lock_promotions(session)
    current = session.scalar(sa.select(MainModelVersion).where(MainModelVersion.status == "active"))
    if current is None:
        raise ConflictError("no main version is active, so there is nothing to roll back; use promote")
    if to_version is None:
        target = session.scalar(
            sa.select(MainModelVersion)
            .where(MainModelVersion.status == "archived", MainModelVersion.activated_at.is_not(None))
            .order_by(MainModelVersion.activated_at.desc(), MainModelVersion.id.desc()).limit(1))
        if target is None:
            raise ConflictError(f"no version was active before {current.version!r}; nothing to roll back to")
    else:
        target = session.scalar(sa.select(MainModelVersion).where(MainModelVersion.version == to_version))
        if target is None:
            raise NotFoundError(f"main version {to_version!r} does not exist")
        if target.id == current.id:
            raise ConflictError(f"main version {to_version!r} is already active")
    return _activate(session, target=target, action="main.rollback", actor=actor, reason=reason, clock=clock)


def archive_main_version(*, session: Session, version: str, actor: str, reason: str,
                         clock: Clock = SYSTEM_CLOCK) -> MainVersionRecord:
    """Retire a candidate (e.g. one the evaluation gate rejected). The active one cannot be archived."""
    target = session.scalar(sa.select(MainModelVersion).where(MainModelVersion.version == version))
    if target is None:
        raise NotFoundError(f"main version {version!r} does not exist")
    if target.status == "active":
        raise ConflictError(f"main version {version!r} is active; promote or roll back to another first")
    if target.status != "archived":
        target.status = "archived"
        write_audit(session=session, actor=actor, action="main.archive", target=version, reason=reason,
                    clock=clock)
        session.flush()
    return get_main_version(session=session, version=version)
