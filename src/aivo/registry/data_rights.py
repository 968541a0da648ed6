"""Learner data rights: export everything held about a learner, and erase it.

"Everything held" is found from the schema, not from a hand-kept list: every table that
references `learners.id`, and every table that references those (e.g. training sessions
through learner models), found by reflection. Tables added by later revisions are covered
as long as they reference the learner (with ON DELETE CASCADE, see models.py).

Erasure deletes the learner row (the database cascades to the rest), writes an audit entry
with counts only, and after the transaction commits deletes the learner's artifacts that no
other row references. If that last step is interrupted, the artifacts are unreferenced and
the next `aivo registry gc` removes them.
"""

from __future__ import annotations

import base64
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.registry.artifacts import ArtifactStore
from aivo.registry.audit import write_audit
from aivo.registry.db import make_session
from aivo.registry.gc import find_references, is_artifact_column
from aivo.registry.learners import get_learner, learner_pk
from aivo.registry.tables import Base, Learner
from aivo.registry.records import Record

log = logging.getLogger(__name__)

EXPORT_FORMAT = "aivo.learner-export/1"
_MAX_DEPTH = 3  # learners -> learner_models -> training_sessions -> (anything hanging off those)


@dataclass(frozen=True)
class _Link:
    child: str
    child_columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]


def _tables(session: Session) -> dict[str, sa.Table]:
    """Known tables from the models; any other table (added by a later revision) reflected."""
    conn = session.connection()
    inspector = sa.inspect(conn)
    tables: dict[str, sa.Table] = {}
    reflected = sa.MetaData()
    for name in inspector.get_table_names():
        if name in Base.metadata.tables:
            tables[name] = Base.metadata.tables[name]
        elif name != "alembic_version":
            tables[name] = sa.Table(name, reflected, autoload_with=conn)
    return tables


def _links(tables: dict[str, sa.Table]) -> dict[str, list[_Link]]:
    by_parent: dict[str, list[_Link]] = defaultdict(list)
    for name, table in tables.items():
        for fk in table.foreign_key_constraints:
            parent = fk.referred_table.name
            if parent == name:
                continue
            by_parent[parent].append(_Link(child=name, child_columns=tuple(c.name for c in fk.columns),
                                           parent=parent, parent_columns=tuple(e.column.name for e in fk.elements)))
    return by_parent


def _learner_rows(session: Session, pk: int) -> dict[str, list[dict[str, Any]]]:
    """{table: rows} for every row that belongs to learner `pk`, learners row included."""
    tables = _tables(session)
    links = _links(tables)
    found: dict[str, list[dict[str, Any]]] = {
        "learners": [dict(r._mapping) for r in session.execute(sa.select(tables["learners"])
                                                                .where(tables["learners"].c.id == pk))]}
    frontier = ["learners"]
    for _depth in range(_MAX_DEPTH):
        next_frontier = []
        for parent in frontier:
            for link in links.get(parent, []):
                if link.child in found or link.child == "learners":
                    continue
                keys = {tuple(row[c] for c in link.parent_columns) for row in found[parent]}
                if not keys:
                    continue
                child = tables[link.child]
                rows: list[dict[str, Any]] = []
                key_list = sorted(keys)
                for start in range(0, len(key_list), 500):
                    chunk = key_list[start:start + 500]
                    if len(link.child_columns) == 1:
                        cond = child.c[link.child_columns[0]].in_([k[0] for k in chunk])
                    else:
                        cond = sa.tuple_(*(child.c[c] for c in link.child_columns)).in_(chunk)
                    order = list(child.primary_key.columns) or list(child.columns)[:1]
                    rows.extend(dict(r._mapping) for r in session.execute(sa.select(child).where(cond)
                                                                           .order_by(*order)))
                if rows:
                    found[link.child] = rows
                    next_frontier.append(link.child)
        frontier = next_frontier
    return found


def _digests(rows_by_table: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    """{digest: {"table.column", ...}} for the artifact columns of these rows."""
    refs: dict[str, set[str]] = defaultdict(set)
    for table, rows in rows_by_table.items():
        for row in rows:
            for column, value in row.items():
                if is_artifact_column(column) and value:
                    refs[value].add(f"{table}.{column}")
    return refs


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    return value


def export_learner(*, session: Session, store: ArtifactStore, learner_id: str, inline_artifacts: bool = False,
                   clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Everything held about the learner as one JSON-ready dict: their rows in every table, and
    their artifacts (listed with size and the columns that reference them; with
    `inline_artifacts`, also their verified content in base64)."""
    learner = get_learner(session=session, learner_id=learner_id)
    rows_by_table = _learner_rows(session, learner_pk(session, learner_id))
    artifacts = []
    for digest, referenced_by in sorted(_digests(rows_by_table).items()):
        entry: dict[str, Any] = {"sha256": digest, "referenced_by": sorted(referenced_by)}
        if inline_artifacts:
            content = store.get_bytes(digest)  # verified: a damaged artifact fails the export loudly
            entry.update(size=len(content), content_base64=base64.b64encode(content).decode())
        else:
            entry["size"] = store.size(digest) if store.exists(digest) else None
        artifacts.append(entry)
    return {
        "format": EXPORT_FORMAT,
        "exported_at": clock.now().isoformat(),
        "learner": learner.to_dict(),
        "data": {table: [{k: _json_value(v) for k, v in row.items()} for row in rows]
                 for table, rows in sorted(rows_by_table.items()) if table != "learners"},
        "artifacts": artifacts,
    }


@dataclass(frozen=True)
class DeletionResult(Record):
    rows_deleted: dict[str, int]  # per table, learners row included
    artifacts_scheduled: int  # deleted from the store once the transaction commits
    audit_action: str = "learner.delete"
    scheduled_digests: list[str] = field(default_factory=list, repr=False)


def delete_learner(*, session: Session, store: ArtifactStore, learner_id: str, actor: str, reason: str = "",
                   clock: Clock = SYSTEM_CLOCK) -> DeletionResult:
    """Erase the learner: interactions, models, sessions, any other row of theirs, and (after
    commit) their artifacts unless another row still references them. Keeps an audit entry
    with counts and the tenant, never the pseudonym."""
    learner = get_learner(session=session, learner_id=learner_id)
    pk = learner_pk(session, learner_id)
    rows_by_table = _learner_rows(session, pk)
    digests = _digests(rows_by_table)
    counts = {table: len(rows) for table, rows in sorted(rows_by_table.items())}
    session.execute(sa.delete(Learner).where(Learner.id == pk))  # ON DELETE CASCADE does the rest
    session.flush()
    leftover = {t: n for t, n in _count_remaining(session, rows_by_table).items() if n}
    if leftover:  # a table without ON DELETE CASCADE would keep personal data: refuse
        raise RuntimeError(f"erasure incomplete, rows remain in {leftover}; "
                           "their foreign keys to the learner must use ON DELETE CASCADE")
    still_used = find_references(session=session, digests=digests)
    doomed = sorted(set(digests) - still_used)
    write_audit(session=session, actor=actor, action="learner.delete", reason=reason,
                details={"tenant": learner.tenant, "rows_deleted": counts, "artifacts_deleted": len(doomed)},
                clock=clock)
    if doomed:
        _DeleteArtifactsAfterCommit(session, store, doomed)
    return DeletionResult(rows_deleted=counts, artifacts_scheduled=len(doomed), scheduled_digests=doomed)


def _count_remaining(session: Session, rows_by_table: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    tables = _tables(session)
    remaining = {}
    for name, rows in rows_by_table.items():
        table = tables[name]
        pk_cols = list(table.primary_key.columns)
        if len(pk_cols) != 1:
            continue
        ids = [row[pk_cols[0].name] for row in rows]
        total = 0
        for start in range(0, len(ids), 500):
            total += session.scalar(sa.select(sa.func.count()).select_from(table)
                                    .where(pk_cols[0].in_(ids[start:start + 500])))
        remaining[name] = total
    return remaining


class _DeleteArtifactsAfterCommit:
    """Delete artifacts once the erasure is committed (never before: a rollback must find them)."""

    def __init__(self, session: Session, store: ArtifactStore, digests: list[str]):
        self.store, self.digests, self.cancelled = store, digests, False
        bind = session.get_bind()
        self.engine = bind.engine if isinstance(bind, Connection) else bind
        event.listen(session, "after_commit", self.on_commit, once=True)
        event.listen(session, "after_rollback", self.on_rollback, once=True)

    def on_rollback(self, _session) -> None:
        self.cancelled = True

    def on_commit(self, _session) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        try:
            # References are checked again: a row committed meanwhile may share an artifact.
            with make_session(self.engine, read_only=True) as check:
                referenced = find_references(session=check, digests=self.digests)
            deleted = sum(1 for d in self.digests if d not in referenced and self.store.delete(d))
            log.info("deleted %d artifacts of an erased learner", deleted)
        except Exception:  # the rows are gone; unreferenced artifacts fall to the next GC
            log.exception("could not delete an erased learner's artifacts; `aivo registry gc --apply` will")
