"""FastAPI dependencies as `Annotated` aliases, so routes declare what they need in one word:

    def handler(registry: RegistryDep, key: ServiceKey, learner: LearnerDep) -> ...

- `SettingsDep`, `RegistryDep`, `ClockDep`: the app's Settings, Registry and clock (`create_app`
  arguments, kept on `app.state`).
- `CurrentKey`: any valid API key (401 without one). `AdminKey`: admin only. `ServiceKey`: admin
  or service (ingest and read). `TeacherKey` is the same as `CurrentKey`, named for readers.
- `LearnerDep`: the `{learner_id}` path parameter (a raw id, pseudonymized here; or a stored
  pseudonym with `?pseudonym=true`), checked against the key's tenant and class list.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPBearer

from aivo.api.auth import authenticate, check_role
from aivo.api.schemas.common import NON_BLANK_PATTERN
from aivo.clock import Clock
from aivo.config import Settings
from aivo.registry import Registry
from aivo.services.api_keys import LearnerRef, VerifiedKey, learner_for_key
from aivo.services.learners import pseudonym_with_key

# Declared for OpenAPI (the "Authorize" button); `authenticate` reads the headers itself.
_bearer_scheme = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_header_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key in a header.")


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> Registry:
    return request.app.state.registry


async def get_clock(request: Request) -> Clock:
    return request.app.state.clock


# Async on purpose: FastAPI runs plain `def` dependencies in a worker thread, one hop each.
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
ClockDep = Annotated[Clock, Depends(get_clock)]


async def require_api_key(request: Request, _bearer=Security(_bearer_scheme),
                          _header=Security(_header_scheme)) -> VerifiedKey:
    """The key the ApiKeyMiddleware verified (or verify it now when the app runs without it)."""
    return await authenticate(request)


CurrentKey = Annotated[VerifiedKey, Depends(require_api_key)]


def require_roles(*roles: str):
    async def dependency(key: CurrentKey) -> VerifiedKey:
        check_role(key, roles)
        return key

    dependency.__name__ = f"require_{'_or_'.join(roles)}"
    return dependency


require_admin = require_roles("admin")
require_service = require_roles("admin", "service")
AdminKey = Annotated[VerifiedKey, Depends(require_admin)]
ServiceKey = Annotated[VerifiedKey, Depends(require_service)]
TeacherKey = CurrentKey

LEARNER_ID_DOC = ("The learner's id as your school system knows it (pseudonymized by the server before "
                  "lookup), or the stored pseudonym with `?pseudonym=true`.")
LearnerIdPath = Annotated[str, Path(min_length=1, max_length=256, pattern=NON_BLANK_PATTERN, description=LEARNER_ID_DOC)]


def pseudonym_from_raw(state, learner_id: str) -> str:
    """The learner's pseudonym (the keyed HMAC of aivo.data.privacy, as `pseudonym_for`), with
    the key read once per process (`app.state.secret_key`) instead of once per request."""
    return pseudonym_with_key(learner_id, key=state.secret_key)


async def learner_from_path(
    request: Request, key: CurrentKey, registry: RegistryDep,
    learner_id: LearnerIdPath,
    pseudonym: Annotated[bool, Query(description="`learner_id` is the stored pseudonym, not the raw id.")] = False,
) -> LearnerRef:
    stored = learner_id if pseudonym else pseudonym_from_raw(request.app.state, learner_id)
    return await run_in_threadpool(learner_for_key, registry=registry, key=key, pseudonym=stored)


LearnerDep = Annotated[LearnerRef, Depends(learner_from_path)]
