"""GET /health (no key), GET /stats and GET /metrics."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

import aivo
from aivo.api.auth import authenticate, bearer_token
from aivo.api.deps import ClockDep, RegistryDep, ServiceKey
from aivo.api.schemas.common import ERROR_RESPONSES
from aivo.api.schemas.health import ActiveModelHealth, ComponentHealth, HealthPublic, StatsPublic
from aivo.api.state import scheduler_status
from aivo.errors import AivoError
from aivo.registry import Registry
from aivo.services import models
from aivo.services import registry as registry_ops

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
_ANONYMOUS_SCHEDULER_FIELDS = frozenset({"in_process", "note", "running", "enabled", "process_running",
                                         "process_leads"})


def _timed(check) -> ComponentHealth:
    start = time.perf_counter()
    try:
        detail = check() or ""
        ok = True
    except Exception as exc:  # health reports failures, it does not raise them
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return ComponentHealth(ok=ok, detail=str(detail)[:300], latency_ms=round((time.perf_counter() - start) * 1e3, 2))


def _active_version(registry: Registry) -> Any:
    return models.active_version(registry=registry, attempts=1)


def _health(request: Request, registry: Registry, *, detailed: bool) -> tuple[HealthPublic, int]:
    state = request.app.state
    database = _timed(lambda: registry_ops.check_database(registry=registry, detailed=detailed))
    store = _timed(lambda: registry_ops.check_store(registry=registry))
    active = None
    if database.ok:
        try:
            active = _active_version(registry)
        except Exception as exc:
            log.warning("health: cannot read the active version: %s", exc)
    loaded = active is not None and active.artifact_sha256 in state.loaded_artifacts
    tutor = None
    if getattr(state, "tutor_service", None) is not None:
        try:
            tutor = state.tutor_service.health().model_dump(mode="json")
        except Exception as exc:
            tutor = {"error": f"{type(exc).__name__}: {exc}"}
    if not database.ok:
        status = "unavailable"
    elif not store.ok or active is None:
        status = "degraded"
    else:
        status = "ok"
    scheduler = scheduler_status(state)
    if not detailed:  # which host and process holds the lease is for callers with a key
        scheduler = {k: v for k, v in scheduler.items() if k in _ANONYMOUS_SCHEDULER_FIELDS}
    body = HealthPublic(status=status, version=aivo.__version__, database=database, artifact_store=store,
                        scheduler=scheduler, tutor=tutor,
                        active_model=ActiveModelHealth(version=active.version if active else None, loaded=loaded),
                        timestamp=state.clock.now())
    return body, 503 if status == "unavailable" else 200


@router.get("/health", response_model=HealthPublic, summary="Service health (no API key needed)",
            responses={503: {"model": HealthPublic, "description": "The database is unreachable."}})
async def health(request: Request, registry: RegistryDep) -> JSONResponse:
    """Database, artifact store, scheduler state, active model (and whether this process has it
    loaded) and the tutor model. 200 when the database answers (`status` ok or degraded), 503
    when it does not. Without a valid key, the schema revision and the scheduler lease holder
    (host and process id) are left out."""
    detailed = False
    if bearer_token(request):
        try:
            await authenticate(request)
            detailed = True
        except AivoError:  # a wrong key is not an error here: the anonymous answer
            detailed = False
    body, code = await run_in_threadpool(lambda: _health(request, registry, detailed=detailed))
    return JSONResponse(body.model_dump(mode="json"), status_code=code)


@router.get("/stats", response_model=StatsPublic, summary="Registry and API statistics",
            responses=ERROR_RESPONSES)
def stats(request: Request, registry: RegistryDep, clock: ClockDep, key: ServiceKey) -> StatsPublic:
    registry_stats = registry_ops.statistics(registry=registry)
    return StatsPublic(registry=registry_stats.to_dict(), api=request.app.state.api_stats.snapshot(),
                       timestamp=clock.now())


@router.get("/metrics", summary="Prometheus metrics", response_class=Response, responses={
    200: {"content": {"text/plain; version=0.0.4": {}}, "description": "Prometheus text exposition."},
    **ERROR_RESPONSES})
def metrics(request: Request, registry: RegistryDep, key: ServiceKey) -> Response:
    body = request.app.state.metrics.render(
        read_stats=lambda: registry_ops.statistics(registry=registry))
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
