"""API fixtures: one real uvicorn server per test module and backend (SQLite, PostgreSQL), on a
loopback port, with a trained tiny Main Brain, two tenants' learners and keys of every role.

`api` (module scope, parametrized over the backends) yields an `ApiServer`: its base URL, its
settings and registry (to check what was written), and the tokens.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import torch
import uvicorn

from aivo.config import Settings
from aivo.data.schema import make_log
from aivo.registry import Registry, import_interactions, open_registry
from aivo.registry.api_keys import create_api_key
from aivo.registry.db import make_engine
from aivo.registry.migrate import upgrade_database
from aivo.services.learners import pseudonym_for
from tests.brain.helpers import random_log, tiny_config
from tests.registry.conftest import PgDatabases

TENANT_A, TENANT_B = "school-a", "school-b"
BACKENDS = ["sqlite", "postgresql"]


@dataclass
class ApiServer:
    base: str
    settings: Settings
    registry: Registry
    app: object
    tokens: dict[str, str] = field(default_factory=dict)  # admin, service, teacher, admin_b, service_b

    def client(self, role: str | None = "admin", *, token: str | None = None) -> httpx.Client:
        token = token or (self.tokens[role] if role else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)

    def pseudonym(self, raw_id: str) -> str:
        return pseudonym_for(settings=self.settings, learner_id=raw_id)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def api_pg_databases():
    dbs = PgDatabases()
    yield dbs
    dbs.drop_all()


def make_settings(home: Path, database_url: str | None, **overrides) -> Settings:
    values = dict(home=home, database_url=database_url, secret_key="api-tests-secret-key-0123456789abcdef",
                  num_threads=1, api_key_cache_s=0.0, max_ingest_batch=200, scheduler_enabled=False,
                  recommender_processes=0)
    values.update(overrides)
    return Settings(**values)


def seed_registry(settings: Settings) -> Registry:
    """Tenant A: 12 learners (L000..L011) and a trained, promoted tiny Main Brain; tenant B: 3 learners."""
    from aivo.services.main_brain import train_main_version

    registry = open_registry(settings)
    log_a = random_log(num_learners=12, length=24, num_items=9, seed=1)
    frame_b = random_log(num_learners=3, length=10, num_items=9, seed=2).frame
    frame_b["learner_id"] = "B" + frame_b["learner_id"].astype(str)

    with registry.session() as session:
        import_interactions(session=session, log=log_a, secret_key=settings.resolved_secret_key(), tenant=TENANT_A)
        import_interactions(session=session, log=make_log(frame_b), secret_key=settings.resolved_secret_key(),
                            tenant=TENANT_B)
    torch.set_num_threads(1)
    # Trained on what the registry holds (pseudonymized), as the service does.
    train_main_version(registry=registry, settings=settings, config=tiny_config(), seed=0, actor="tests")
    return registry


def make_keys(settings: Settings, registry: Registry) -> dict[str, str]:
    teacher_learners = [pseudonym_for(settings=settings, learner_id=x) for x in ("L001", "L002")]
    specs = {"admin": ("admin", TENANT_A, ()), "service": ("service", TENANT_A, ()),
             "teacher": ("teacher", TENANT_A, teacher_learners), "admin_b": ("admin", TENANT_B, ()),
             "service_b": ("service", TENANT_B, ())}
    tokens = {}
    with registry.session() as session:
        for name, (role, tenant, learners) in specs.items():
            tokens[name] = create_api_key(session=session, role=role, tenant=tenant, name=name,
                                          learner_ids=learners, actor="tests").token
    return tokens


class ServerThread:
    def __init__(self, app):
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture(scope="module", params=BACKENDS)
def api(request, tmp_path_factory):
    from aivo.api import create_app

    home = tmp_path_factory.mktemp(f"api_{request.param}") / "home"
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("api_pg_databases").create()
        engine = make_engine(url)
        upgrade_database(engine)
        engine.dispose()
    overrides = getattr(request.module, "SETTINGS_OVERRIDES", {})
    settings = make_settings(home, url, **overrides)
    registry = seed_registry(settings)
    tokens = make_keys(settings, registry)
    app = create_app(settings, tutor=getattr(request.module, "MOUNT_TUTOR", False))
    with ServerThread(app) as base:
        yield ApiServer(base=base, settings=settings, registry=registry, app=app, tokens=tokens)
