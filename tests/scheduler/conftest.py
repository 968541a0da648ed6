"""Scheduler fixtures: the registry fixtures (SQLite and PostgreSQL) and the training ones."""

from tests.registry.conftest import (  # noqa: F401  (fixtures)
    backend,
    clock,
    db_url,
    engine,
    pg_databases,
    pg_migrated_url,
    registry,
    sqlite_template,
    store,
)
from tests.training.conftest import cohort, loaded, settings  # noqa: F401  (fixtures)
