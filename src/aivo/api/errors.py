"""Exception handlers: every error is JSON `{"detail": "<message a person can act on>"}`.

- `AivoError` subclasses map to their `http_status` (DataError 422, NotFoundError 404,
  ConflictError 409, AuthError 401, ForbiddenError 403, PayloadTooLargeError 413, ...).
- Request validation: malformed JSON is 400 ("malformed JSON body: ..."); a body, path or query
  that does not match its schema is 422 with one line per problem in `detail` and the details
  in `errors`.
- A library error that `aivo.error_translation.translate` recognises (an unreachable database:
  503; an invalid value built into a model inside a service: 422) answers like its `AivoError`.
- Anything else is a bug: logged with its traceback, answered 500 without internals, and the
  connection stays open (aivo.api.middleware.CatchAll).

Logs name the route template (`/v1/learners/{learner_id}`) and the learner's pseudonym, never
the raw path: a URL holds the learner id your systems use, which the server never writes down.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from aivo.api.dashboard_ui import error_page, wants_html
from aivo.api.deps import pseudonym_from_raw
from aivo.error_translation import translate
from aivo.errors import AivoError, AuthError

log = logging.getLogger(__name__)
_MAX_LISTED = 5


def _where(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    json_errors = [e for e in errors if e.get("type") == "json_invalid"]
    if json_errors:
        ctx = json_errors[0].get("ctx") or {}
        reason = ctx.get("error") or json_errors[0].get("msg", "")
        return JSONResponse({"detail": f"malformed JSON body: {reason}"}, status_code=400)
    lines = [f"{_where(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in errors[:_MAX_LISTED]]
    more = f" (and {len(errors) - _MAX_LISTED} more)" if len(errors) > _MAX_LISTED else ""
    listed = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors[:100]]
    return JSONResponse({"detail": "invalid request: " + "; ".join(lines) + more, "errors": listed},
                        status_code=422)


def where(scope: dict) -> str:
    """`METHOD /route/{template}` plus the learner's pseudonym when the route names a learner:
    what a log line may say about a request (never the raw path or query)."""
    route = scope.get("route")
    template = getattr(route, "path", None) or "<unmatched route>"
    text = f"{scope.get('method', '')} {template}"
    raw = (scope.get("path_params") or {}).get("learner_id")
    if raw:
        try:
            state = scope["app"].state
            is_pseudonym = b"pseudonym=true" in (scope.get("query_string") or b"").lower()
            text += f" (learner {raw[:64] if is_pseudonym else pseudonym_from_raw(state, raw)})"
        except Exception:  # a log line must not fail the error path
            text += " (learner not shown)"
    return text


def unexpected_error(scope: dict, exc: Exception) -> tuple[int, str]:
    """(status, detail) for an exception no handler answered; logs it."""
    translated = translate(exc, for_cli=False)
    if translated is not None:
        if translated.http_status >= 500:
            log.error("%s: %s", where(scope), translated.message)
        return translated.http_status, translated.message
    log.error("unhandled error in %s", where(scope), exc_info=exc)
    return 500, "internal server error (logged on the server)"


def _allowed_methods(request: Request) -> str:
    """Every method of the path, for a 405's `Allow` (RFC 9110): Starlette lists only the methods
    of the first route whose path matches, and a path served by two routes (GET and DELETE of
    /v1/learners/{learner_id}) then answered `Allow: GET` (the fuzzer's Allow header check)."""
    methods: set[str] = set()

    def collect(routes) -> None:
        for route in routes:
            if route.matches(request.scope)[0] == Match.NONE:
                continue
            methods.update(getattr(route, "methods", None) or ())
            # an included router (FastAPI wraps them) holds its own routes, matched on the full path
            inner = getattr(route, "routes", None) or getattr(getattr(route, "original_router", None), "routes", None)
            if inner:
                collect(inner)

    collect(request.app.router.routes)
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AivoError)
    async def aivo_error(request: Request, exc: AivoError) -> JSONResponse:
        return _aivo_response(request, exc)

    def _aivo_response(request: Request, exc: AivoError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
        if exc.http_status >= 500:
            log.error("%s: %s", where(request.scope), exc.message)
        if wants_html(request):  # a person in the dashboard: a page, not JSON
            return error_page(request, exc.http_status, exc.message)
        return JSONResponse({"detail": exc.message}, status_code=exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        response = _validation_response(exc)
        if wants_html(request):
            detail = json.loads(response.body)["detail"]
            return error_page(request, response.status_code, detail)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        if wants_html(request):
            return error_page(request, exc.status_code, "There is no such page." if exc.status_code == 404 else detail)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)

    # Exceptions nothing above answers reach aivo.api.middleware.CatchAll (`unexpected_error`): an
    # `Exception` handler here would run in Starlette's ServerErrorMiddleware, which re-raises
    # after answering, and the server would close the keep-alive connection.
