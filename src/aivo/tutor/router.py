"""The tutor's HTTP endpoints, as a FastAPI `APIRouter` for the AIVO API to mount.

    from aivo.tutor.router import create_tutor_router
    app.state.tutor_service = TutorService(settings=settings)
    app.include_router(create_tutor_router(authorize_learner=..., tenant_of=...),
                       dependencies=[Depends(require_api_key)])

Routes are thin: parse (pydantic), check the caller may act for the learner, call one
`TutorService` method, format. `AivoError`s become their HTTP status with `{"detail": message}`
here, so the router does not depend on the app's exception handlers. Streaming endpoints do
all validation before the stream starts, so errors still get a proper status code.
"""

# No `from __future__ import annotations` here: FastAPI must see the route signatures'
# `Annotated[..., Depends(...)]` objects, which are local to `create_tutor_router`.
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse

from aivo.errors import AivoError, NotFoundError
from aivo.registry.tables import DEFAULT_TENANT
from aivo.tutor.schemas import (AssessRequest, AssessResponse, ChatCompletionRequest, ChatCompletionResponse,
                                CloneStartRequest, CloneStartResponse, CloneStatusResponse, GenerateRequest,
                                GenerateResponse, TutorHealth)
from aivo.tutor.service import TutorService, parse_model_name

# (request, learner_id) -> None; raise AuthError/ForbiddenError/NotFoundError to refuse.
LearnerGuard = Callable[[Request, str], Awaitable[None] | None]
TenantOf = Callable[[Request], str]


def service_from_app_state(request: Request) -> TutorService:
    service = getattr(request.app.state, "tutor_service", None)
    if service is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the tutor service is not configured")
    return service


@contextmanager
def http_errors() -> Iterator[None]:
    try:
        yield
    except AivoError as exc:
        raise HTTPException(exc.http_status, exc.message) from exc


def _sse_json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def create_tutor_router(*, get_service: Callable[..., TutorService] = service_from_app_state,
                        authorize_learner: LearnerGuard | None = None,
                        tenant_of: TenantOf | None = None) -> APIRouter:
    """The tutor routes. `get_service` is a FastAPI dependency returning the TutorService;
    `authorize_learner` is called for every learner id a request names; `tenant_of` gives the
    caller's tenant for new learners (default tenant without it)."""
    router = APIRouter(tags=["tutor"])
    ServiceDep = Annotated[TutorService, Depends(get_service)]

    async def guard(request: Request, learner_id: str | None) -> None:
        if learner_id is None or authorize_learner is None:
            return
        with http_errors():
            outcome = authorize_learner(request, learner_id)
            if outcome is not None:
                await outcome

    @router.post("/v1/generate", response_model=GenerateResponse, summary="Student-aware explanation")
    async def generate(body: GenerateRequest, request: Request, service: ServiceDep) -> GenerateResponse:
        await guard(request, body.context.student_id)
        with http_errors():
            return await run_in_threadpool(service.generate, body)

    @router.post("/v1/generate/stream", summary="Student-aware explanation, streamed (SSE)",
                 response_class=EventSourceResponse,
                 responses={200: {"content": {"text/event-stream": {}},
                                  "description": "`token` events, then one `done` event with usage."}})
    async def generate_stream(body: GenerateRequest, request: Request, service: ServiceDep) -> EventSourceResponse:
        await guard(request, body.context.student_id)
        with http_errors():
            events = await run_in_threadpool(service.generate_events, body)

        async def sse() -> AsyncIterator[dict]:
            async for name, data in events:
                yield {"event": name, "data": _sse_json(data)}

        return EventSourceResponse(sse(), sep="\n")

    @router.post("/v1/chat/completions", summary="OpenAI-compatible chat completions",
                 responses={200: {"model": ChatCompletionResponse,
                                  "content": {"text/event-stream": {}},
                                  "description": "JSON, or chat.completion.chunk events ending with [DONE]."}})
    async def chat_completions(body: ChatCompletionRequest, request: Request, service: ServiceDep):
        with http_errors():
            learner_id = parse_model_name(body.model)
        await guard(request, learner_id)
        if body.aivo_context is not None:
            await guard(request, body.aivo_context.student_id)
        with http_errors():
            if not body.stream:
                return await run_in_threadpool(service.chat_completion, body)
            chunks = await run_in_threadpool(service.chat_completion_chunks, body)

        async def sse() -> AsyncIterator[dict]:
            async for payload in chunks:
                yield {"data": payload}

        return EventSourceResponse(sse(), sep="\n")

    @router.post("/v1/assess", response_model=AssessResponse, summary="Assess a free-text answer")
    async def assess(body: AssessRequest, request: Request, service: ServiceDep) -> AssessResponse:
        if body.context is not None:
            await guard(request, body.context.student_id)
        with http_errors():
            return await run_in_threadpool(service.assess, body)

    @router.post("/v1/clone/start", response_model=CloneStartResponse, status_code=status.HTTP_202_ACCEPTED,
                 summary="Clone a learner's tutor: fine-tune a LoRA adapter in the background")
    async def clone_start(body: CloneStartRequest, request: Request, service: ServiceDep) -> CloneStartResponse:
        await guard(request, body.student_id)
        tenant = tenant_of(request) if tenant_of is not None else DEFAULT_TENANT
        with http_errors():
            return await run_in_threadpool(lambda: service.start_clone(body, tenant=tenant))

    @router.get("/v1/clone/{clone_id}/status", response_model=CloneStatusResponse, summary="Cloning progress")
    async def clone_status(clone_id: str, request: Request, service: ServiceDep) -> CloneStatusResponse:
        with http_errors():
            result = await run_in_threadpool(service.clone_status, clone_id)
        try:
            await guard(request, result.student_id)
        except HTTPException as exc:
            if exc.status_code != status.HTTP_404_NOT_FOUND:
                raise
            # Another tenant's clone is answered like one that does not exist (same status, same words).
            with http_errors():
                raise NotFoundError(f"no clone job {clone_id!r}") from None
        return result

    @router.get("/v1/tutor/health", response_model=TutorHealth, summary="Tutor model state")
    async def tutor_health(service: ServiceDep) -> TutorHealth:
        return service.health()

    return router
