"""The OpenAPI document, made to say what the server really does (`install_openapi(app)`).

FastAPI documents each route from its signature; what the app adds around the routes is
written in here, once, for every operation:

- error answers: every error body is `ErrorResponse` (`{"detail": "...", "errors": [...]}`),
  422 included (FastAPI would document its own `HTTPValidationError` shape, which the app
  never sends); 400 (malformed JSON) and 413 (body too large) for operations with a body;
  401 and 403 for operations that need a key, and 404 for those of them that name something
  (in the path or the body); 422 (a NUL in the path or query), 500 and 503 (database
  unavailable) for all;
- text: no string may hold a NUL character (the `RequestGuard` middleware refuses them), so
  every string schema of a request gets the pattern `^[^\\x00]*$` unless its own pattern
  already excludes NUL, object keys get it as `propertyNames`, and open values (`Any`) become
  `JsonValue`, any JSON value without NUL.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from aivo.api.schemas.common import ErrorResponse

NUL_FREE_PATTERN = "^[^\\x00]*$"
_REF = "#/components/schemas/"
_JSON_VALUE = "JsonValue"
_METHODS = ("get", "put", "post", "delete", "patch")

_ERRORS = {
    "400": "Malformed JSON body.",
    "401": "Missing, invalid or revoked API key.",
    "403": "The key's role may not use this endpoint.",
    "404": "Something the request names (a learner, version, job or clone) does not exist in the key's tenant.",
    "413": "Request body too large (see AIVO_MAX_INGEST_BATCH).",
    "422": ("Invalid request: `detail` has one line per problem, `errors` lists each (`loc`, `msg`, `type`). "
            "Also any NUL character in the path, query or body."),
    "500": "A bug: logged on the server (route and learner pseudonym, never the raw id), answered without internals.",
    "503": "The database is unavailable, its schema is outdated, or a configured model is missing.",
}


def install_openapi(app: FastAPI) -> None:
    """Replace `app.openapi` by a generator that post-processes FastAPI's document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes, tags=app.openapi_tags, servers=app.servers)
            app.openapi_schema = make_truthful(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# Swagger UI and ReDoc, served from the pinned `fastapi-offline` wheel (its static/ folder holds
# swagger-ui-bundle.js and .css, Apache-2.0, and redoc.standalone.js, MIT): /docs and /redoc work
# without any network, and load nothing from a CDN or font service.
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS_URL = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI), /docs/oauth2-redirect and /redoc from local files. Create the app with
    docs_url=None and redoc_url=None."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    # validatorUrl None: Swagger UI would otherwise fetch a validity badge from validator.swagger.io.
    parameters = {**(app.swagger_ui_parameters or {}), "validatorUrl": None}

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title}: API reference",
                                   oauth2_redirect_url="/docs/oauth2-redirect",
                                   swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png",
                                   swagger_ui_parameters=parameters)

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title}: API reference (ReDoc)",
                              redoc_js_url=f"{DOCS_ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png", with_google_fonts=False)


def make_truthful(schema: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorResponse"] = ErrorResponse.model_json_schema(ref_template=_REF + "{model}")
    components[_JSON_VALUE] = _json_value_schema()
    request_schemas: set[str] = set()
    for path_item in schema.get("paths", {}).values():
        for method in _METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            _document_errors(operation)
            for parameter in operation.get("parameters", []):
                if "schema" in parameter:
                    parameter["schema"] = _nul_free(parameter["schema"], components, request_schemas)
            for media in (operation.get("requestBody") or {}).get("content", {}).values():
                if "schema" in media:
                    media["schema"] = _nul_free(media["schema"], components, request_schemas)
    for name in ("HTTPValidationError", "ValidationError"):
        if not _referenced(schema, _REF + name):
            components.pop(name, None)
    return schema


def _document_errors(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    codes = ["422", "500", "503"]
    if "requestBody" in operation:
        codes += ["400", "413"]
    if operation.get("security"):
        codes += ["401", "403"]
        if "requestBody" in operation or any(p.get("in") == "path" for p in operation.get("parameters", [])):
            codes.append("404")
    error_body = {"application/json": {"schema": {"$ref": _REF + "ErrorResponse"}}}
    for code in codes:
        responses.setdefault(code, {"description": _ERRORS[code]})
    # FastAPI's own 422 describes a body the app never sends: every error carries ErrorResponse.
    own_422 = _json_schema(responses["422"]) or {}
    if own_422.get("$ref", "").endswith("/HTTPValidationError"):
        responses["422"]["content"] = error_body
    for code, entry in responses.items():
        if code[0] not in "45" or (code == "503" and "content" in entry and "HealthPublic" in str(entry)):
            continue
        own = _json_schema(entry)
        if own is None:
            entry["content"] = error_body
        elif not _referenced(own, _REF + "ErrorResponse"):
            # A route's own error shape (OpenAI's, for the OpenAI-compatible endpoints); the app's
            # middleware (key check, request guard, last-resort handler) still answers ErrorResponse.
            entry["content"] = _either(own)


def _json_schema(entry: dict[str, Any]) -> dict[str, Any] | None:
    return ((entry.get("content") or {}).get("application/json") or {}).get("schema")


def _either(own: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": {"anyOf": [own, {"$ref": _REF + "ErrorResponse"}]}}}


def _json_value_schema() -> dict[str, Any]:
    ref = {"$ref": _REF + _JSON_VALUE}
    return {"description": "Any JSON value whose strings (keys included) hold no NUL character.", "anyOf": [
        {"type": "string", "pattern": NUL_FREE_PATTERN}, {"type": "number"}, {"type": "boolean"}, {"type": "null"},
        {"type": "array", "items": ref},
        {"type": "object", "propertyNames": {"pattern": NUL_FREE_PATTERN}, "additionalProperties": ref}]}


def _is_open(schema: Any) -> bool:
    """`Any` in pydantic's schema: true, or a schema that constrains nothing."""
    if schema is True:
        return True
    return isinstance(schema, dict) and not (set(schema) - {"title", "description", "default", "examples"})


def _nul_free(schema: Any, components: dict[str, Any], seen: set[str]) -> Any:
    """`schema` with NUL-free strings, keys and open values (components are edited in place)."""
    if _is_open(schema):
        return {"$ref": _REF + _JSON_VALUE, **{k: v for k, v in (schema if isinstance(schema, dict) else {}).items()
                                                if k in ("title", "description")}}
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        name = ref[len(_REF):]
        if name not in seen and name in components and name != _JSON_VALUE:
            seen.add(name)
            components[name] = _nul_free(components[name], components, seen)
        return schema
    out = dict(schema)
    types = out.get("type")
    types = types if isinstance(types, list) else [types]
    if "string" in types and "pattern" not in out and "enum" not in out and "const" not in out \
            and out.get("format") != "binary":
        out["pattern"] = NUL_FREE_PATTERN
    if "object" in types or "properties" in out or "additionalProperties" in out:
        names = dict(out.get("propertyNames") or {})
        names.setdefault("pattern", NUL_FREE_PATTERN)
        out["propertyNames"] = names
        if out.get("additionalProperties") is not False:
            additional = out.get("additionalProperties", True)
            out["additionalProperties"] = _nul_free(additional, components, seen)
    for key in ("properties", "patternProperties", "$defs"):
        if isinstance(out.get(key), dict):
            out[key] = {name: _nul_free(sub, components, seen) for name, sub in out[key].items()}
    for key in ("items", "not"):
        if key in out:
            out[key] = _nul_free(out[key], components, seen)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(out.get(key), list):
            out[key] = [_nul_free(sub, components, seen) for sub in out[key]]
    return out


def _referenced(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_referenced(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_referenced(v, ref) for v in node)
    return False
