"""Engines and sessions: one code path for embedded SQLite and production PostgreSQL.

SQLite runs in WAL mode (readers never block the writer), with a busy timeout, foreign keys
on and `synchronous=NORMAL` (a power loss may drop the last commits but never corrupts the
file; a process crash loses nothing committed). Write transactions start with
`BEGIN IMMEDIATE`, so two writers queue on the busy timeout instead of failing when one of
them upgrades a read lock. Read-only sessions start a plain deferred `BEGIN`.

PostgreSQL goes through psycopg 3; `postgresql://` and `postgres://` URLs are accepted and
mapped to `postgresql+psycopg://`.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from aivo.errors import ConfigError
from aivo.registry.types import install_safe_loaders
from aivo.utils import restrict_to_owner

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
_BEGIN_OPTION = "aivo_sqlite_begin"
_JITTER = random.Random()  # retry jitter only: spreads colliding writers, decides nothing
T = TypeVar("T")


def normalize_database_url(url: str) -> str:
    """Map the URL spellings users write to the drivers AIVO ships with."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise ConfigError(f"AIVO_DATABASE_URL is not a database URL: {url!r} ({exc})") from exc
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"unsupported database {backend!r}: use sqlite:///PATH or postgresql://...")
    if backend == "postgresql" and parsed.drivername != "postgresql+psycopg":
        raise ConfigError(f"PostgreSQL driver {parsed.drivername!r} is not installed; "
                          "use postgresql:// (psycopg 3)")
    return url


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """A new engine for `url` with AIVO's connection settings (see module docstring)."""
    url = normalize_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise ConfigError("an in-memory SQLite database cannot be shared between sessions; "
                              "give a file path (sqlite:///path/aivo.db)")
        make_private_file(Path(database).expanduser())
        engine = sa.create_engine(url, echo=echo, pool_size=8, max_overflow=16,
                                  connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                                                "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    engine = sa.create_engine(url, echo=echo, pool_pre_ping=True, pool_size=8, max_overflow=16)
    event.listen(engine, "connect", _postgresql_on_connect)
    return engine


def _postgresql_on_connect(dbapi_connection, _record) -> None:
    install_safe_loaders(dbapi_connection)  # one unreadable stored timestamp never fails a read


def make_private_file(path: Path) -> None:
    """Create the SQLite file readable by its owner only (0600; SQLite gives its -wal and -shm
    files the database file's mode), and take group and other bits off an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:  # another process created it meanwhile
            pass
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        mode = restrict_to_owner(candidate)
        if mode is not None:
            log.info("made %s private (mode %o)", candidate, mode)


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    # Take BEGIN away from the sqlite3 module (it skips it for SELECT and DDL); see _sqlite_on_begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_size_limit = 67108864")  # shrink the WAL file back to 64 MiB after big writes
    cursor.close()


def _sqlite_on_begin(conn) -> None:
    mode = conn.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(url: str) -> Engine:
    """The process-wide engine for `url` (engines pool connections: share them)."""
    url = normalize_database_url(url)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = make_engine(url)
        return engine


def dispose_engines() -> None:
    """Close every cached engine (tests, forked workers)."""
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def make_session(engine: Engine, *, read_only: bool = False) -> Session:
    """A session bound to `engine`. Writes belong in the default (write) session: on SQLite a
    read-only session that later writes can fail with 'database is locked'."""
    bind = engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"}) if read_only else engine
    return Session(bind=bind, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    session = make_session(engine, read_only=read_only)
    try:
        yield session
        if read_only:
            session.rollback()
        else:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A sessionmaker for frameworks that want one (FastAPI dependencies)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def is_retryable(exc: BaseException) -> bool:
    """Lock timeouts, deadlocks and serialization failures: the transaction may simply be rerun."""
    if not isinstance(exc, (OperationalError, DBAPIError)):
        return False
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01", "55P03"):  # serialization failure, deadlock, lock not available
        return True
    text = str(orig or exc).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def run_in_transaction(engine: Engine, work: Callable[[Session], T], *, attempts: int = 5,
                       read_only: bool = False) -> T:
    """Run `work(session)` in its own transaction, rerunning it on transient lock errors.

    `work` must be safe to rerun: it sees a fresh session each attempt."""
    for attempt in range(1, attempts + 1):
        try:
            with session_scope(engine, read_only=read_only) as session:
                return work(session)
        except (OperationalError, DBAPIError) as exc:
            if attempt == attempts or not is_retryable(exc):
                raise
            delay = min(2.0, 0.05 * 2 ** attempt) * (0.5 + _JITTER.random())
            log.warning("transient database error (attempt %d/%d), retrying in %.2fs: %s",
                        attempt, attempts, delay, exc.orig if hasattr(exc, "orig") else exc)
            time.sleep(delay)
    raise AssertionError("unreachable")


def dialect_insert_for(dialect: str, table: sa.Table):
    """INSERT with the backend's ON CONFLICT support (`.on_conflict_do_nothing(...)`)."""
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


def dialect_insert(session: Session, table: sa.Table):
    return dialect_insert_for(dialect_name(session), table)


def dialect_name(session_or_engine: Session | Engine) -> str:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name
