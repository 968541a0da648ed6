from tests.federated.fixtures import small_world  # noqa: F401
from tests.registry.conftest import (  # noqa: F401
    backend, clock, db_url, empty_db_url, engine, pg_databases, pg_migrated_url, pg_scratch_url, registry,
    sqlite_template, store)
