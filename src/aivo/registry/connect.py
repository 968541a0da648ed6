"""`open_registry()`: the one front door the CLI and the services use to reach the registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from aivo.config import Settings, get_settings
from aivo.registry.artifacts import ArtifactStore
from aivo.registry.db import get_engine, run_in_transaction, session_scope
from aivo.registry.migrate import check_schema as _check_schema
from aivo.registry.migrate import ensure_schema

T = TypeVar("T")


@dataclass(frozen=True)
class Registry:
    """An engine (SQLite or PostgreSQL) and an artifact store, from one Settings object."""

    engine: Engine
    store: ArtifactStore

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """One transaction: commits on success, rolls back on error."""
        with session_scope(self.engine, read_only=read_only) as session:
            yield session

    def run(self, work: Callable[[Session], T], *, read_only: bool = False, attempts: int = 5) -> T:
        """`work(session)` in its own transaction, rerun on transient lock errors."""
        return run_in_transaction(self.engine, work, read_only=read_only, attempts=attempts)


def open_registry(settings: Settings | None = None, *, check_schema: bool = True,
                  auto_init: bool = True) -> Registry:
    """Connect to the configured database and artifact store.

    With `check_schema` (the default) an outdated schema raises `SchemaOutdatedError` naming
    `aivo db upgrade`; a brand-new embedded SQLite database is created on the spot when
    `auto_init` is on."""
    settings = settings or get_settings()
    if settings.is_embedded:
        settings.ensure_home()
    engine = get_engine(settings.resolved_database_url)
    if check_schema:
        if auto_init:
            ensure_schema(engine)
        else:
            _check_schema(engine)
    return Registry(engine=engine, store=ArtifactStore.from_settings(settings))
