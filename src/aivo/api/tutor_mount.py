"""Mounting the tutor's router (aivo.api.routers.tutor) behind the API's keys, roles and tenants."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from aivo.api.auth import authenticate, check_role
from aivo.api.deps import pseudonym_from_raw, require_api_key
from aivo.api.routers.tutor import create_tutor_router
from aivo.config import Settings
from aivo.errors import NotFoundError
from aivo.services.api_keys import learner_for_key
from aivo.services.tutor import TutorService

# Starting a clone trains and stores a model for the learner: a write, so not for teacher keys.
_WRITE_PATHS = ("/v1/clone/start",)


async def authorize_tutor_learner(request: Request, learner_id: str) -> str:
    """The tutor names learners (`student_id`, `aivo-tutor:<id>`) the way the rest of the API does:
    by the id the school's systems use, pseudonymized here; a stored pseudonym is accepted too.
    The learner must exist in the key's tenant (404 otherwise) and, for a teacher key, be on its
    class list. Returns the pseudonym the tutor uses."""
    key = await authenticate(request)
    if request.url.path in _WRITE_PATHS:
        check_role(key, ("admin", "service"))
    registry = request.app.state.registry
    try:
        ref = await run_in_threadpool(learner_for_key, registry=registry, key=key,
                                      pseudonym=pseudonym_from_raw(request.app.state, learner_id))
        return ref.pseudonym
    except NotFoundError:
        pass  # not a raw id of this tenant: maybe the stored pseudonym
    try:
        ref = await run_in_threadpool(learner_for_key, registry=registry, key=key, pseudonym=learner_id)
    except NotFoundError as exc:
        raise NotFoundError(f"learner {learner_id!r} not found in this key's tenant: use the learner's id as your "
                            "school system knows it (as in /v1/interactions), for a learner AIVO has data for") from exc
    return ref.pseudonym


def key_tenant(request: Request) -> str:
    return request.state.api_key.tenant


def mount_tutor(app: FastAPI, *, settings: Settings) -> None:
    app.state.tutor_service = TutorService(settings=settings, clock=app.state.clock)  # loads the model lazily
    app.include_router(create_tutor_router(authorize_learner=authorize_tutor_learner, tenant_of=key_tenant),
                       dependencies=[Depends(require_api_key)])
