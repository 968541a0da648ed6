"""The AIVO HTTP API: `create_app(settings)` builds the FastAPI application.

    from aivo.api import create_app
    app = create_app(settings)                       # or: uvicorn --factory aivo.api.app:create_app

Routers are thin (parse, call one service function, format). Other packages add theirs to
`ROUTERS` below (one line each) and plug into `app.state.hooks` (aivo.api.state.ApiHooks):
the in-process scheduler, ingest listeners, model-status details and the privacy ledger.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

import aivo
from aivo.api.auth import ApiKeyMiddleware, KeyVerifier
from aivo.api.errors import install_error_handlers, unexpected_error
from aivo.api.metrics import ApiMetrics
from aivo.api.middleware import CatchAll, RequestGuard, RequestMetrics
from aivo.api.openapi import install_docs, install_openapi
from aivo.api.recommendation_cache import RecommendationCache
from aivo.api.recommender import RecommenderPool
from aivo.api.routers import dashboard, federated, health, interactions, learners, models, recommendations
from aivo.api.routers import dashboard_learners, dashboard_models, dashboard_runs, drift, federation, scheduler
from aivo.api.routers import trainer_jobs, tutor_alerts
from aivo.api.state import ApiHooks, ApiStats
from aivo.api.tutor_mount import mount_tutor
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings, get_settings
from aivo.registry import Registry
from aivo.services.main_brain import load_main_brain
from aivo.services.runtime import open_registry
from aivo.services.scheduler import start_scheduler

log = logging.getLogger(__name__)

# Every router of the API. Add yours here (one line); mount order is documentation order.
ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    interactions.router,
    learners.router,
    recommendations.router,
    models.router,
    federated.router,
    federation.router,
    scheduler.router,
    trainer_jobs.router,
    drift.router,
    tutor_alerts.router,
    dashboard.router,
    dashboard_models.router,
    dashboard_runs.router,
    dashboard_learners.router,
)

_TAGS = [
    {"name": "health", "description": "Liveness, statistics and Prometheus metrics. `/health` needs no key."},
    {"name": "interactions", "description": "Batch ingest of learners' attempts."},
    {"name": "learners", "description": "Status, export and erasure of learners."},
    {"name": "recommendations", "description": "What each learner should do next."},
    {"name": "models", "description": "Main Brain versions: list, status, promote, rollback."},
    {"name": "federated", "description": "Federated aggregation rounds."},
    {"name": "scheduler", "description": "The training scheduler: status, manual triggers, schedules."},
    {"name": "trainer", "description": "Trainer jobs: datasheet-documented training, evaluation harness, promotion."},
    {"name": "tutor", "description": "Student-aware explanations, assessment and per-learner tutor clones."},
    {"name": "dashboard", "description": "The operator's console in the browser (server-rendered HTML): sign in "
                                         "at /dashboard/login."},
]
_DESCRIPTION = """A personal, private AI model for every K-12 learner.

Every endpoint except `GET /health` needs an API key (`Authorization: Bearer <key>` or
`X-API-Key: <key>`), created with `aivo apikey create --role admin|service|teacher|counsellor --tenant T`.
Roles: **admin** (everything), **service** (ingest and read), **teacher** (status and
recommendations of the learners on its class list), **counsellor** (the school's tutor safety alerts). A key reaches only its tenant's learners;
another tenant's learner is answered 404, like one that does not exist.

Learner ids in URLs are the ids your systems use; the server pseudonymizes them (keyed HMAC)
before any lookup. Errors are JSON `{"detail": "..."}` with a 4xx status for your mistakes.
"""


def _max_body_bytes(settings: Settings) -> int:
    # A generous 2 KiB per interaction of the largest batch, and never below 16 MiB (tutor bodies).
    return max(16 << 20, settings.max_ingest_batch * 2048)


def _wants_scheduler(settings: Settings, scheduler: bool | None) -> tuple[bool, str]:
    if scheduler is not None:
        return scheduler, "disabled by the caller" if not scheduler else ""
    if not settings.scheduler_enabled:
        return False, "disabled (AIVO_SCHEDULER_ENABLED=false)"
    if settings.api_workers > 1:
        return False, (f"not in the API: {settings.api_workers} workers; run `aivo scheduler run` "
                       "as its own process (exactly one scheduler)")
    return True, ""


def _start_scheduler(app: FastAPI) -> None:
    """The training scheduler in this process (single worker only; see _wants_scheduler)."""
    state = app.state
    state.hooks.scheduler = start_scheduler(registry=state.registry, settings=state.settings, clock=state.clock)
    state.hooks.scheduler_note = "runs in this API process"
    log.info("scheduler started in the API process")


def _preload_main_brain(app: FastAPI) -> None:
    """Load the active Main Brain in the background so the first recommendation is not slow."""
    try:
        loaded = load_main_brain(registry=app.state.registry)
    except Exception as exc:  # no active version yet, or a broken artifact: health shows it
        log.info("no Main Brain preloaded: %s", exc)
        return
    app.state.loaded_artifacts.add(loaded.version.artifact_sha256)
    log.info("Main Brain %s loaded", loaded.version.version)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    if state.run_scheduler:
        _start_scheduler(app)
    threading.Thread(target=_preload_main_brain, args=(app,), name="aivo-preload", daemon=True).start()
    processes = state.settings.recommender_processes
    if processes:
        state.recommender = RecommenderPool(settings=state.settings, processes=processes)
        threading.Thread(target=state.recommender.warm_up, name="aivo-recommender-warm-up", daemon=True).start()
    try:
        yield
    finally:
        if state.recommender is not None:
            state.recommender.close()
        if state.hooks.scheduler is not None:
            state.hooks.scheduler.stop()
        tutor = getattr(state, "tutor_service", None)
        if tutor is not None:
            tutor.close()


def create_app(settings: Settings | None = None, *, clock: Clock = SYSTEM_CLOCK, registry: Registry | None = None,
               tutor: bool = True, scheduler: bool | None = None) -> FastAPI:
    """The API application.

    settings: default `get_settings()` (environment and .env). clock: injected time source.
    registry: default `open_registry(settings)` (checks the schema; creates an embedded one).
    tutor: mount the tutor endpoints (the model loads on first use).
    scheduler: run the scheduler in this process; default: when AIVO_SCHEDULER_ENABLED and
    AIVO_API_WORKERS == 1 (`aivo serve` sets the latter).
    """
    settings = settings or get_settings()
    registry = registry or open_registry(settings, threads=False)

    app = FastAPI(title="AIVO API", version=aivo.__version__, description=_DESCRIPTION, openapi_tags=_TAGS,
                  lifespan=_lifespan, docs_url=None, redoc_url=None)
    state = app.state
    state.settings, state.registry, state.clock = settings, registry, clock
    # Read once: fails now rather than on the first request when the key is missing, and spares
    # every request a file read in embedded mode.
    state.secret_key = settings.resolved_secret_key()
    state.key_verifier = KeyVerifier(registry=registry, clock=clock, cache_s=settings.api_key_cache_s)
    state.metrics = ApiMetrics()
    state.api_stats = ApiStats()
    state.recommendation_cache = RecommendationCache(ttl_s=settings.recommendation_cache_ttl_s,
                                                     max_entries=settings.recommendation_cache_size)
    state.loaded_artifacts = set()
    state.recommender = None  # RecommenderPool, started with the app (AIVO_RECOMMENDER_PROCESSES)
    state.hooks = ApiHooks()
    state.run_scheduler, note = _wants_scheduler(settings, scheduler)
    state.hooks.scheduler_note = note or "starting"
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)
    for router in ROUTERS:
        app.include_router(router)
    trainer_jobs.install_hooks(app)
    if tutor:
        mount_tutor(app, settings=settings)
    # Added inside out: metrics see every request, keys are checked before a body is read, and a
    # bug anywhere below is answered 500 on a connection that stays open.
    app.add_middleware(RequestGuard, max_bytes=_max_body_bytes(settings))
    app.add_middleware(ApiKeyMiddleware)
    app.add_middleware(CatchAll, on_error=unexpected_error)
    app.add_middleware(RequestMetrics, metrics=state.metrics)
    return app
