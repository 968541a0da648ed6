"""The tutor's HTTP endpoints (generation, OpenAI-compatible chat, assessment, clones, health), as
a FastAPI `APIRouter` the AIVO API mounts (aivo.api.tutor_mount).

    from aivo.api.routers.tutor import create_tutor_router
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
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from aivo.errors import AivoError, NotFoundError
from aivo.registry.tables import DEFAULT_TENANT
from aivo.services.tutor import BASE_MODEL_ALIAS, TutorService, parse_model_name
from aivo.tutor.schemas import (UNSUPPORTED_CHAT_FIELDS, AssessRequest, AssessResponse, ChatCompletionRequest,
                                ChatCompletionResponse, CloneStartRequest, CloneStartResponse, CloneStatusResponse,
                                GenerateRequest, GenerateResponse, OpenAIErrorResponse, OpenAIModel, OpenAIModelList,
                                TutorHealth)

# (request, learner_id) -> the learner id to use (e.g. the pseudonym of a raw id), or None to keep
# it as given; raise AuthError/ForbiddenError/NotFoundError to refuse.
LearnerGuard = Callable[[Request, str], Awaitable[str | None] | str | None]
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


_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                       404: "not_found_error", 409: "conflict_error", 429: "rate_limit_error"}


def openai_error(status_code: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    """An error in OpenAI's shape, which its clients parse (`{"error": {"message", "type", ...}}`).
    A request the service cannot take (422 elsewhere in the API) is a 400 here, as OpenAI answers
    invalid requests (it has no 422), and as the OpenAI routes document their errors."""
    if status_code == 422:
        status_code = 400
    return JSONResponse({"error": {"message": message, "type": _OPENAI_ERROR_TYPES.get(status_code, "api_error"),
                                   "param": param, "code": code}}, status_code=status_code)


_UNSUPPORTED = {**{name: f"'{name}' is not supported by the AIVO tutor" for name in UNSUPPORTED_CHAT_FIELDS},
                "response_format": "'response_format' is not supported by the AIVO tutor (only {\"type\": \"text\"})",
                "logprobs": "'logprobs' is not supported by the AIVO tutor",
                "n": "only n=1 is supported: one choice per request"}


def validation_error_as_openai(exc: RequestValidationError) -> JSONResponse:
    """A 400 in OpenAI's shape: unsupported fields (tools, response_format other than text,
    logprobs, n > 1, ...) are named as such, other problems by their field."""
    errors = exc.errors()
    for error in errors:
        loc = [p for p in error.get("loc", ()) if p != "body"]
        if loc and loc[0] in _UNSUPPORTED:
            return openai_error(400, _UNSUPPORTED[loc[0]], param=str(loc[0]), code="unsupported_parameter")
    for error in errors:  # a union's first branch (str) would hide the real problem of a part list
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        if "content" in loc and loc[-1] == "type" and error.get("type") == "literal_error":
            return openai_error(400, f"only text content parts are supported, got {error.get('input')!r}",
                                param=".".join(loc), code="unsupported_parameter")
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    message = first.get("msg", "invalid request")
    if first.get("type") == "json_invalid":
        message, param = "the request body is not valid JSON", None
    return openai_error(400, f"{param + ': ' if param else ''}{message}", param=param)


class OpenAIRoute(APIRoute):
    """Routes of the OpenAI-compatible surface: validation errors answer in OpenAI's shape."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request):
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return validation_error_as_openai(exc)

        return route


def _openai_errors(*codes: int) -> dict:
    both = {"application/json": {"schema": {"anyOf": [{"$ref": "#/components/schemas/OpenAIErrorResponse"},
                                                      {"$ref": "#/components/schemas/ErrorResponse"}]}}}
    out: dict = {400: {"model": OpenAIErrorResponse, "description": "Invalid or unsupported fields (OpenAI's shape)."}}
    for code in codes:
        out[code] = {"description": "OpenAI's error shape from the tutor; the API's own shape from the server "
                                    "around it.", "content": both}
    return out


def create_tutor_router(*, get_service: Callable[..., TutorService] = service_from_app_state,
                        authorize_learner: LearnerGuard | None = None,
                        tenant_of: TenantOf | None = None) -> APIRouter:
    """The tutor routes. `get_service` is a FastAPI dependency returning the TutorService;
    `authorize_learner` is called for every learner id a request names; `tenant_of` gives the
    caller's tenant for new learners (default tenant without it)."""
    router = APIRouter(tags=["tutor"])
    ServiceDep = Annotated[TutorService, Depends(get_service)]

    async def guard(request: Request, learner_id: str | None) -> str | None:
        """The learner id the service should use (see LearnerGuard)."""
        if learner_id is None or authorize_learner is None:
            return learner_id
        with http_errors():
            outcome = authorize_learner(request, learner_id)
            if hasattr(outcome, "__await__"):
                outcome = await outcome
        return outcome if isinstance(outcome, str) else learner_id

    @router.post("/v1/generate", response_model=GenerateResponse, summary="Student-aware explanation")
    async def generate(body: GenerateRequest, request: Request, service: ServiceDep) -> GenerateResponse:
        body.context.student_id = await guard(request, body.context.student_id)
        with http_errors():
            return await run_in_threadpool(service.generate, body)

    @router.post("/v1/generate/stream", summary="Student-aware explanation, streamed (SSE)",
                 response_class=EventSourceResponse,
                 responses={200: {"content": {"text/event-stream": {}},
                                  "description": "`token` events, then one `done` event with usage."}})
    async def generate_stream(body: GenerateRequest, request: Request, service: ServiceDep) -> EventSourceResponse:
        body.context.student_id = await guard(request, body.context.student_id)
        with http_errors():
            events = await run_in_threadpool(service.generate_events, body)

        async def sse() -> AsyncIterator[dict]:
            async for name, data in events:
                yield {"event": name, "data": _sse_json(data)}

        return EventSourceResponse(sse(), sep="\n")

    openai = APIRouter(route_class=OpenAIRoute)

    async def chat_completions(body: ChatCompletionRequest, request: Request, service: ServiceDep):
        learner_id = None
        try:
            with http_errors():
                learner_id = parse_model_name(body.model)
            body.learner_id = await guard(request, learner_id)
            if body.aivo_context is not None:
                body.aivo_context.student_id = await guard(request, body.aivo_context.student_id)
            with http_errors():
                if not body.stream:
                    return await run_in_threadpool(service.chat_completion, body)
                chunks = await run_in_threadpool(service.chat_completion_chunks, body)
        except HTTPException as exc:
            return openai_error(exc.status_code, str(exc.detail),
                                code="model_not_found" if exc.status_code == 404 and learner_id else None)

        async def sse() -> AsyncIterator[dict]:
            async for payload in chunks:
                yield {"data": payload}

        return EventSourceResponse(sse(), sep="\n")

    chat_doc = dict(summary="OpenAI-compatible chat completions",
                    responses={200: {"model": ChatCompletionResponse, "content": {"text/event-stream": {}},
                                     "description": "JSON, or chat.completion.chunk events ending with [DONE]."},
                               **_openai_errors(403, 404, 409, 502, 503)})
    # /openai/v1 is the base URL for OpenAI clients (`/v1/models` is the Main Brain's list);
    # /v1/chat/completions stays for existing callers.
    openai.add_api_route("/openai/v1/chat/completions", chat_completions, methods=["POST"], **chat_doc)
    openai.add_api_route("/v1/chat/completions", chat_completions, methods=["POST"], **chat_doc)

    @openai.get("/openai/v1/models", response_model=OpenAIModelList, summary="OpenAI-compatible model list")
    async def openai_models(service: ServiceDep) -> OpenAIModelList:
        """The base tutor model. A learner's adapter is `aivo-tutor:<learner id>` (not listed: the list
        would disclose which learners exist)."""
        return OpenAIModelList(data=[OpenAIModel(id=BASE_MODEL_ALIAS, created=int(service.now().timestamp()))])

    @openai.get("/openai/v1/models/{model_id:path}", response_model=OpenAIModel, summary="One OpenAI model",
                responses=_openai_errors(403, 404))
    async def openai_model(model_id: str, request: Request, service: ServiceDep):
        learner_id = None
        try:
            with http_errors():
                learner_id = parse_model_name(model_id)
            await guard(request, learner_id)
        except HTTPException as exc:
            return openai_error(exc.status_code, str(exc.detail), code="model_not_found")
        return OpenAIModel(id=model_id, created=int(service.now().timestamp()))

    router.include_router(openai)

    @router.post("/v1/assess", response_model=AssessResponse, summary="Assess a free-text answer")
    async def assess(body: AssessRequest, request: Request, service: ServiceDep) -> AssessResponse:
        if body.context is not None:
            body.context.student_id = await guard(request, body.context.student_id)
        with http_errors():
            return await run_in_threadpool(service.assess, body)

    @router.post("/v1/clone/start", response_model=CloneStartResponse, status_code=status.HTTP_202_ACCEPTED,
                 summary="Clone a learner's tutor: fine-tune a LoRA adapter in the background")
    async def clone_start(body: CloneStartRequest, request: Request, service: ServiceDep) -> CloneStartResponse:
        body.student_id = await guard(request, body.student_id)
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
