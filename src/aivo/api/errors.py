"""Exception handlers: every error is JSON `{"detail": "<message a person can act on>"}`.

- `AivoError` subclasses map to their `http_status` (DataError 422, NotFoundError 404,
  ConflictError 409, AuthError 401, ForbiddenError 403, PayloadTooLargeError 413, ...).
- Request validation: malformed JSON is 400 ("malformed JSON body: ..."); a body, path or query
  that does not match its schema is 422 with one line per problem in `detail` and the details
  in `errors`.
- A library error that `aivo.error_translation.translate` recognises (an unreachable database:
  503; an invalid value built into a model inside a service: 422) answers like its `AivoError`.
- Anything else is a bug: logged with its traceback, answered 500 without internals.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AivoError)
    async def aivo_error(request: Request, exc: AivoError) -> JSONResponse:
        return _aivo_response(request, exc)

    def _aivo_response(request: Request, exc: AivoError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
        if exc.http_status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc.message)
        return JSONResponse({"detail": exc.message}, status_code=exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        translated = translate(exc, for_cli=False)
        if translated is not None:
            return _aivo_response(request, translated)
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error (logged on the server)"}, status_code=500)
