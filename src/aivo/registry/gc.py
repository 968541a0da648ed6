"""Artifact references, garbage collection and the registry consistency check.

References are found by naming convention: any column called `artifact_sha256` or ending in
`_artifact_sha256`, in any table of the database (found by reflection, so tables added by later
revisions count without registering anything).

GC never deletes a referenced artifact. It lists the store *before* reading references, and
only deletes unreferenced artifacts older than `min_age_s` (default one hour), so an artifact
written a moment ago whose row is about to commit is safe. Storing content that already exists
refreshes the stored copy's modification time (`REFRESH_AFTER_S`), and GC checks that time again
right before each delete, so an old artifact that is being referenced anew is kept too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import IntegrityError
from aivo.registry.artifacts import ArtifactStore
from aivo.registry.audit import write_audit
from aivo.registry.tables import MainModelVersion
from aivo.registry.records import Record

log = logging.getLogger(__name__)

DEFAULT_GC_MIN_AGE_S = 3600.0
_CHUNK = 500


def is_artifact_column(name: str) -> bool:
    return name == "artifact_sha256" or name.endswith("_artifact_sha256")


def artifact_columns(session: Session) -> list[tuple[str, str]]:
    """(table, column) pairs that hold artifact digests, found by reflecting the database."""
    inspector = sa.inspect(session.connection())
    return [(table, col["name"]) for table in sorted(inspector.get_table_names())
            for col in inspector.get_columns(table) if is_artifact_column(col["name"])]


def referenced_digests(*, session: Session) -> set[str]:
    found: set[str] = set()
    for table, column in artifact_columns(session):
        col = sa.column(column)
        stmt = sa.select(col).select_from(sa.table(table)).where(col.is_not(None)).distinct()
        found.update(session.scalars(stmt))
    return found


def find_references(*, session: Session, digests: Iterable[str]) -> set[str]:
    """The subset of `digests` that some row still references."""
    wanted = sorted(set(digests))
    found: set[str] = set()
    if not wanted:
        return found
    for table, column in artifact_columns(session):
        col = sa.column(column)
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            found.update(session.scalars(sa.select(col).select_from(sa.table(table))
                                         .where(col.in_(chunk)).distinct()))
    return found


@dataclass(frozen=True)
class GcResult(Record):
    dry_run: bool
    stored: int  # artifacts in the store
    referenced: int  # distinct digests referenced by rows
    unreferenced: list[str]  # deletable now (old enough)
    kept_recent: int  # unreferenced but younger than min_age_s: left for a later run
    deleted: list[str]
    bytes_reclaimable: int
    temp_files_removed: int


def collect_garbage(*, session: Session, store: ArtifactStore, dry_run: bool = True,
                    min_age_s: float = DEFAULT_GC_MIN_AGE_S, actor: str = "gc",
                    clock: Clock = SYSTEM_CLOCK) -> GcResult:
    """Find (and unless `dry_run`, delete) artifacts no row references."""
    listing = list(store.iter_artifacts())  # list first: anything stored later is not a candidate
    referenced = referenced_digests(session=session)
    cutoff = clock.now() - timedelta(seconds=min_age_s)
    unreferenced = [a for a in listing if a.sha256 not in referenced]
    old = [a for a in unreferenced if a.modified <= cutoff]
    deleted: list[str] = []
    temp_removed = 0
    if not dry_run and old:
        still_referenced = find_references(session=session, digests=[a.sha256 for a in old])
        for artifact in old:
            if artifact.sha256 in still_referenced:
                continue
            # Stored again since the listing (a writer about to reference it): not garbage.
            modified = store.modified(artifact.sha256)
            if modified is not None and modified > cutoff:
                continue
            if store.delete(artifact.sha256):
                deleted.append(artifact.sha256)
        write_audit(session=session, actor=actor, action="artifact.gc", reason="unreferenced artifacts",
                    details={"deleted": len(deleted), "bytes": sum(a.size for a in old if a.sha256 in deleted)},
                    clock=clock)
        log.info("gc deleted %d unreferenced artifacts", len(deleted))
    if not dry_run:
        temp_removed = store.remove_stale_temp_files(older_than=cutoff)
    return GcResult(dry_run=dry_run, stored=len(listing), referenced=len(referenced),
                    unreferenced=sorted(a.sha256 for a in old), kept_recent=len(unreferenced) - len(old),
                    deleted=sorted(deleted), bytes_reclaimable=sum(a.size for a in old),
                    temp_files_removed=temp_removed)


@dataclass(frozen=True)
class RegistryCheck(Record):
    ok: bool
    active_versions: int
    referenced_artifacts: int
    problems: list[str] = field(default_factory=list)


def verify_registry(*, session: Session, store: ArtifactStore, deep: bool = False) -> RegistryCheck:
    """Check that every referenced artifact is in the store (and, with `deep`, intact) and that
    at most one main version is active."""
    problems: list[str] = []
    stored = {a.sha256: a.size for a in store.iter_artifacts()}
    referenced = referenced_digests(session=session)
    for digest in sorted(referenced):
        if digest not in stored:
            problems.append(f"artifact {digest} is referenced but missing from the store")
        elif deep:
            try:
                store.verify(digest)
            except IntegrityError as exc:
                problems.append(exc.message)
    for version, digest, size in session.execute(
            sa.select(MainModelVersion.version, MainModelVersion.artifact_sha256, MainModelVersion.artifact_size)):
        if digest in stored and stored[digest] != size:
            problems.append(f"main version {version}: artifact {digest} has {stored[digest]} bytes, "
                            f"expected {size}")
    active = session.scalar(sa.select(sa.func.count()).select_from(MainModelVersion)
                            .where(MainModelVersion.status == "active"))
    if active > 1:
        problems.append(f"{active} main versions are active")
    return RegistryCheck(ok=not problems, active_versions=int(active), referenced_artifacts=len(referenced),
                         problems=problems)
