"""GET /v1/learners/{id}/recommendations, served through the per-process cache."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from aivo.api.deps import ClockDep, CurrentKey, LearnerDep, RegistryDep, SettingsDep
from aivo.api.recommendation_cache import read_stamp
from aivo.api.schemas.common import LEARNER_ERRORS, ErrorResponse
from aivo.api.schemas.recommendations import RecommendationPublic
from aivo.errors import ConflictError
from aivo.services.recommendations import recommend_for_learner

router = APIRouter(tags=["recommendations"])


@router.get("/v1/learners/{learner_id}/recommendations", response_model=RecommendationPublic,
            summary="Next items and per-skill decisions",
            responses={**LEARNER_ERRORS, 409: {"model": ErrorResponse,
                                               "description": "No active Main Brain, or no interactions yet."}})
def recommendations(request: Request, registry: RegistryDep, settings: SettingsDep, clock: ClockDep,
                    key: CurrentKey, learner: LearnerDep,
                    num_items: Annotated[int, Query(ge=1, le=50, description="How many next items.")] = 5,
                    ) -> RecommendationPublic:
    """The next items (predicted success closest to the target), a LEVEL_UP / LEVEL_DOWN / STAY /
    REVIEW decision with its reason for every practised skill, and the predicted mastery per
    skill. Cached per learner until new interactions, a promotion or a retrained clone (see
    docs/api.md). Teacher keys: learners on their class list only."""
    state = request.app.state
    stamp = registry.run(lambda session: read_stamp(session=session, learner_pk=learner.pk), read_only=True)
    if stamp.active_artifact is None:
        raise ConflictError("there is no active Main Brain yet: train one (POST /v1/scheduler/train-main-brain "
                            "or `aivo train-main`) or promote a version")
    if stamp.num_interactions == 0:
        raise ConflictError("this learner has no interactions yet: send some with POST /v1/interactions")

    def compute() -> tuple[dict, datetime]:
        rec = recommend_for_learner(registry=registry, settings=settings, learner_id=learner.pseudonym,
                                    num_items=num_items, clock=clock)
        return asdict(rec), clock.now()

    (body, computed_at), cached = state.recommendation_cache.get_or_compute(
        (learner.pk, num_items), stamp.key(), compute)
    if stamp.active_artifact:
        state.loaded_artifacts.add(stamp.active_artifact)
    state.metrics.recommendations.labels("true" if cached else "false").inc()
    state.api_stats.add_recommendation(cached=cached)
    return RecommendationPublic(**body, model_version=stamp.active_version, computed_at=computed_at, cached=cached)
