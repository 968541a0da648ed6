"""Registry fixtures: every test that takes `db_url` runs on SQLite and on PostgreSQL.

PostgreSQL (127.0.0.1:5432, trust auth; override with AIVO_TEST_PG_URL) is required, never
skipped: the session creates a fresh database `aivo_test_<random>`, migrates it once, truncates
it between tests, and drops it at the end. Tests that need an empty database ask for
`empty_db_url`.
"""

from __future__ import annotations

import os
import secrets
import shutil
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from aivo.clock import FrozenClock
from aivo.registry.artifacts import ArtifactStore
from aivo.registry.connect import Registry
from aivo.registry.db import dispose_engines, make_engine
from aivo.registry.migrate import upgrade_database

PG_SERVER_URL = os.environ.get("AIVO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


def _pg_url(database: str) -> str:
    return sa.engine.make_url(PG_SERVER_URL).set(database=database).render_as_string(hide_password=False)


class PgDatabases:
    """Creates PostgreSQL databases for this test session and drops them all at the end."""

    def __init__(self) -> None:
        self.admin = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
        try:
            with self.admin.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # fail loudly: the PostgreSQL half must run, not skip
            raise RuntimeError(f"PostgreSQL is required for the registry tests at {PG_SERVER_URL}: {exc}") from exc
        self.prefix = f"aivo_test_{secrets.token_hex(4)}"
        self.created: list[str] = []

    def create(self) -> str:
        name = f"{self.prefix}_{len(self.created)}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return _pg_url(name)

    def drop_all(self) -> None:
        dispose_engines()
        with self.admin.connect() as conn:
            for name in self.created:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_databases():
    dbs = PgDatabases()
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def pg_migrated_url(pg_databases) -> str:
    url = pg_databases.create()
    engine = make_engine(url)
    upgrade_database(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "registry.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_database(engine)
    engine.dispose()
    return str(path)


def _truncate_pg(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        names = [t for t in sa.inspect(conn).get_table_names() if t != "alembic_version"]
        if names:
            conn.execute(sa.text(f"TRUNCATE TABLE {', '.join(names)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def db_url(backend, request, tmp_path) -> str:
    """A migrated, empty registry database on the parametrized backend."""
    if backend == "sqlite":
        path = tmp_path / "registry.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_migrated_url")
    _truncate_pg(url)
    return url


@pytest.fixture(scope="session")
def pg_scratch_url(pg_databases) -> str:
    """One more database, emptied (schema dropped) for each test that wants an empty one:
    cheaper than CREATE/DROP DATABASE per test, which checkpoint."""
    return pg_databases.create()


def empty_pg_database(url: str) -> str:
    dispose_engines()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def empty_db_url(backend, request, tmp_path) -> str:
    """An empty database (no schema) on the parametrized backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return empty_pg_database(request.getfixturevalue("pg_scratch_url"))


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"))


@pytest.fixture
def registry(engine, store) -> Registry:
    return Registry(engine=engine, store=store)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc))
