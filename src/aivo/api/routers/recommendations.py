"""GET /v1/learners/{id}/recommendations, served through the per-process cache.

The hot path: one query (learner, access, stamp) in a worker thread, then a cache hit answered
on the event loop. Only a miss computes (in a worker thread, once per learner at a time).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from aivo.api.deps import CurrentKey, LearnerIdPath, pseudonym_from_raw
from aivo.api.schemas.common import LEARNER_ERRORS, ErrorResponse
from aivo.api.schemas.recommendations import RecommendationPublic
from aivo.clock import FrozenClock
from aivo.errors import ConflictError
from aivo.services.api_keys import check_learner_access
from aivo.services.recommendations import recommend_for_learner, serving_lookup

router = APIRouter(tags=["recommendations"])


@router.get("/v1/learners/{learner_id}/recommendations", response_model=RecommendationPublic,
            summary="Next items and per-skill decisions",
            responses={**LEARNER_ERRORS, 409: {"model": ErrorResponse,
                                               "description": "No active Main Brain, or no interactions yet."}})
async def recommendations(
    request: Request, key: CurrentKey,
    learner_id: LearnerIdPath,
    pseudonym: Annotated[bool, Query(description="`learner_id` is the stored pseudonym, not the raw id.")] = False,
    num_items: Annotated[int, Query(ge=1, le=50, description="How many next items.")] = 5,
    policy: Annotated[Literal["aivo-gain", "aivo-target"] | None, Query(
        description="Recommendation policy: aivo-gain (largest expected gain in mastery under the Main Brain, "
                    "respecting prerequisites, reviews before forgetting) or aivo-target (predicted success "
                    "closest to the target). Default: AIVO_RECOMMENDATION_POLICY (aivo-gain).")] = None,
) -> Response:
    """The next items (predicted success closest to the target), a LEVEL_UP / LEVEL_DOWN / STAY /
    REVIEW decision with its reason for every practised skill, and the predicted mastery per
    skill. Cached per learner until new interactions, a promotion or a retrained clone (see
    docs/api.md). Teacher keys: learners on their class list only."""
    # The hot path reads app state directly: each declared dependency costs a measurable share
    # of a cached answer (see benchmarks/api_recommendations.py).
    state = request.app.state
    registry, settings, clock = state.registry, state.settings, state.clock
    policy_name = policy or settings.recommendation_policy
    stored = learner_id if pseudonym else pseudonym_from_raw(state, learner_id)
    found = await run_in_threadpool(lambda: serving_lookup(registry=registry, pseudonym=stored, key_pk=key.pk))
    check_learner_access(key, tenant=found.tenant, linked=found.linked)
    stamp = found.stamp
    if stamp.active_artifact is None:
        raise ConflictError("there is no active Main Brain yet: train one (POST /v1/scheduler/train-main-brain "
                            "or `aivo train-main`) or promote a version")
    if stamp.num_interactions == 0:
        raise ConflictError("this learner has no interactions yet: send some with POST /v1/interactions")

    def compute() -> tuple[dict, datetime]:
        now = clock.now()
        if state.recommender is not None:  # in a recommender process: this worker's event loop stays free
            return state.recommender.compute(pseudonym=stored, num_items=num_items, now=now,
                                             policy=policy_name), now
        rec = recommend_for_learner(registry=registry, settings=settings, learner_id=stored, num_items=num_items,
                                    clock=FrozenClock(now), policy_name=policy_name)
        return asdict(rec), now

    cache_key, stamp_key = (stamp.learner_pk, num_items, policy_name), stamp.key()
    hit = state.recommendation_cache.get(cache_key, stamp_key)
    cached = hit is not None
    if not cached:
        hit, cached = await run_in_threadpool(state.recommendation_cache.get_or_compute, cache_key, stamp_key, compute)
    body, computed_at = hit
    state.loaded_artifacts.add(stamp.active_artifact)
    state.metrics.recommendations.labels("true" if cached else "false").inc()
    state.api_stats.add_recommendation(cached=cached)
    public = RecommendationPublic(**body, model_version=stamp.active_version, computed_at=computed_at, cached=cached)
    return Response(public.model_dump_json(), media_type="application/json")
