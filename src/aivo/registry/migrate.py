"""Schema migrations (Alembic, shipped inside the package) and the schema check every command
runs before touching the registry.

- `upgrade_database(engine)` brings a database to the newest revision (`aivo db upgrade`).
- `check_schema(engine)` raises `SchemaOutdatedError` naming the command to run when the
  database is behind (or ahead of) this AIVO.
- `ensure_schema(engine)` = check, except that a brand-new, empty embedded SQLite database is
  created on the spot (so `make demo` works on a fresh machine). A database that already holds
  an older schema is never upgraded behind the user's back.
"""

from __future__ import annotations

import fcntl
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from aivo.errors import SchemaOutdatedError

log = logging.getLogger(__name__)
# Alembic narrates every step at INFO; AIVO logs one line per upgrade itself.
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
UPGRADE_COMMAND = "aivo db upgrade"


def alembic_config() -> Config:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


@cache
def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


@cache
def head_revision() -> str:
    """The newest revision this AIVO knows. Raises if the chain has split into several heads."""
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migration chain has {len(heads)} heads ({', '.join(heads)}); "
                           "each revision must revise the previous head")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The database's revision, or None when it has no AIVO schema."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _is_empty(engine: Engine) -> bool:
    with engine.connect() as conn:
        return not set(sa.inspect(conn).get_table_names()) - {"alembic_version"}


@dataclass(frozen=True)
class UpgradeResult:
    from_revision: str | None
    to_revision: str

    @property
    def changed(self) -> bool:
        return self.from_revision != self.to_revision


def upgrade_database(engine: Engine, *, revision: str = "head") -> UpgradeResult:
    """Run the migrations up to `revision` (default: the newest). Safe to run concurrently."""
    before = current_revision(engine)
    _run_alembic(engine, "upgrade", revision)
    after = current_revision(engine)
    if before != after:
        log.info("registry schema upgraded from %s to %s", before or "empty", after)
    return UpgradeResult(from_revision=before, to_revision=after or "")


def downgrade_database(engine: Engine, *, revision: str) -> None:
    """Go back to `revision` ('base' drops everything). For development and tests."""
    _run_alembic(engine, "downgrade", revision)


def _run_alembic(engine: Engine, direction: str, revision: str, *, lock: bool = True) -> None:
    cfg = alembic_config()
    with (_embedded_lock(engine) if lock else nullcontext()), engine.connect() as conn:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations copy tables; with foreign keys on, dropping a parent table would
            # cascade into its children. The pragma only works outside a transaction.
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = OFF")
        try:
            cfg.attributes["connection"] = conn
            getattr(command, direction)(cfg, revision)
            conn.commit()
            if sqlite:
                problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                conn.rollback()
                if problems:
                    raise RuntimeError(f"migration left {len(problems)} broken foreign keys: {problems[:5]}")
        finally:
            if sqlite:
                conn.rollback()
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = ON")


def check_schema(engine: Engine) -> str:
    """Return the current revision if it is the newest; raise `SchemaOutdatedError` otherwise."""
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return current
    where = _describe(engine)
    if current is None:
        raise SchemaOutdatedError(f"the registry database ({where}) has no AIVO schema yet; "
                                  f"run `{UPGRADE_COMMAND}` to create it")
    known = {rev.revision for rev in script_directory().walk_revisions()}
    if current not in known:
        raise SchemaOutdatedError(f"the registry database ({where}) is at revision {current}, which this "
                                  f"AIVO does not know (it was written by a newer AIVO); upgrade AIVO")
    raise SchemaOutdatedError(f"the registry database ({where}) is at revision {current}, but this AIVO "
                              f"needs {head}; run `{UPGRADE_COMMAND}` (back up the database first)")


def ensure_schema(engine: Engine, *, auto_init: bool = True) -> str:
    """`check_schema`, creating the schema first when the database is an empty embedded SQLite."""
    if auto_init and engine.dialect.name == "sqlite" and current_revision(engine) is None:
        with _embedded_lock(engine):
            if _is_empty(engine):
                log.info("creating a new embedded registry database at %s", engine.url.database)
                _run_alembic(engine, "upgrade", "head", lock=False)
    return check_schema(engine)


def _describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


class _embedded_lock:
    """A file lock next to an SQLite database, so two processes never create it at once.
    PostgreSQL serializes migrations with an advisory lock instead (see migrations/env.py)."""

    def __init__(self, engine: Engine):
        self._path = None
        if engine.dialect.name == "sqlite" and engine.url.database:
            self._path = Path(engine.url.database).expanduser().resolve().with_suffix(".migrate.lock")
        self._fh = None

    def __enter__(self):
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self._path, "a")
            fcntl.flock(self._fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
