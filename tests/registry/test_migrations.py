"""Migrations: up from empty, up from the previous revision, the outdated-schema stop, the chain."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from aivo.errors import SchemaOutdatedError
from aivo.registry import check_schema, current_revision, ensure_schema, head_revision, upgrade_database
from aivo.registry.db import make_engine
from aivo.registry.migrate import downgrade_database, script_directory
from aivo.registry.tables import Base

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def empty_engine(empty_db_url):
    engine = make_engine(empty_db_url)
    yield engine
    engine.dispose()


def test_chain_is_linear_with_one_head():
    revisions = list(script_directory().walk_revisions())
    assert len(script_directory().get_heads()) == 1
    for rev in revisions:  # every revision revises exactly one (except the first), no merges or branches
        assert rev.down_revision is None or isinstance(rev.down_revision, str)
    bases = [r for r in revisions if r.down_revision is None]
    assert len(bases) == 1 and head_revision() == revisions[0].revision


def test_upgrade_from_empty_matches_the_models(empty_engine):
    with pytest.raises(SchemaOutdatedError, match="aivo db upgrade"):
        check_schema(empty_engine)
    result = upgrade_database(empty_engine)
    assert (result.from_revision, result.to_revision, result.changed) == (None, head_revision(), True)
    assert check_schema(empty_engine) == head_revision()
    with empty_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    assert not upgrade_database(empty_engine).changed  # idempotent


def test_the_tables_package_alone_holds_the_whole_schema(empty_engine):
    """No table appears because some other package happened to be imported: a fresh interpreter
    that imports only `aivo.registry.tables` sees every table the migrations create."""
    upgrade_database(empty_engine)
    with empty_engine.connect() as conn:
        migrated = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
    out = subprocess.run([sys.executable, "-c", "import aivo.registry.tables as t; print(' '.join(t.metadata.tables))"],
                         capture_output=True, text=True, check=True)
    assert set(out.stdout.split()) == migrated


def test_upgrade_from_previous_revision_keeps_data(empty_engine):
    previous = script_directory().get_revision(head_revision()).down_revision
    upgrade_database(empty_engine, revision=previous)
    with empty_engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO learners (pseudonym, tenant, created_at) VALUES ('p1', 'default', :t)"),
                     {"t": NOW})
    with pytest.raises(SchemaOutdatedError, match=f"at revision {previous}.*run `aivo db upgrade`"):
        check_schema(empty_engine)
    with pytest.raises(SchemaOutdatedError):  # an existing, older DB is never upgraded implicitly
        ensure_schema(empty_engine)
    upgrade_database(empty_engine)
    assert current_revision(empty_engine) == head_revision()
    with empty_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pseudonym FROM learners")).scalar_one() == "p1"


def test_downgrade_to_base_and_back(empty_engine):
    upgrade_database(empty_engine)
    downgrade_database(empty_engine, revision="base")
    with empty_engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) <= {"alembic_version"}
    upgrade_database(empty_engine)
    assert check_schema(empty_engine) == head_revision()


def test_database_from_a_newer_aivo_is_refused(empty_engine):
    upgrade_database(empty_engine)
    with empty_engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaOutdatedError, match="newer AIVO"):
        check_schema(empty_engine)


def test_only_empty_embedded_databases_are_created_automatically(empty_engine, backend):
    if backend == "sqlite":
        assert ensure_schema(empty_engine) == head_revision()
    else:  # a production database is migrated on purpose, by `aivo db upgrade`
        with pytest.raises(SchemaOutdatedError, match="no AIVO schema yet; run `aivo db upgrade`"):
            ensure_schema(empty_engine)


def test_sqlite_connection_settings(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x' / 'r.db'}")
    with engine.connect() as conn:
        pragmas = {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in
                   ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")}
    engine.dispose()
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000, "synchronous": 1}
