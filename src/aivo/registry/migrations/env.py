"""Alembic environment for the AIVO registry.

AIVO passes an open connection in `config.attributes["connection"]` (aivo.registry.migrate).
Run standalone (`alembic -c .../alembic.ini upgrade head`), it connects to `-x url=...` or to
the URL from AIVO settings.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from aivo.config import get_settings
from aivo.registry.db import make_engine
from aivo.registry.tables import Base

# A fixed key for PostgreSQL's advisory lock: two `aivo db upgrade` at once run one after the other.
MIGRATION_LOCK_KEY = 0x41495630  # "AIV0"


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER goes through table copies
        compare_type=True,
        # SQLite does have transactional DDL (AIVO emits BEGIN itself): a revision applies whole or not at all.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return url
    return get_settings().resolved_database_url


connection = context.config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    _run(connection)
else:
    engine = make_engine(_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
