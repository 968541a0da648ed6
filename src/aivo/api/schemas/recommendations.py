"""GET /v1/learners/{id}/recommendations."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class ItemSuggestionPublic(BaseModel):
    item_id: str
    skill_ids: list[str]
    p_correct: float = Field(..., description="Predicted probability of a correct answer if served next.")
    difficulty_level: int | None = Field(None, description="1 (easiest) .. 10.")
    reason: str


class SkillDecisionPublic(BaseModel):
    skill_id: str
    decision: Literal["LEVEL_UP", "LEVEL_DOWN", "STAY", "REVIEW"]
    mastery: float
    attempts: int
    recent_accuracy: float | None
    days_since_practice: float | None
    reason: str


class RecommendationPublic(BaseModel):
    learner_id: str = Field(..., description="The learner's pseudonym.")
    model_version: str | None = Field(None, description="The Main Brain version that produced it.")
    target_success: float
    next_items: list[ItemSuggestionPublic]
    skills: list[SkillDecisionPublic] = Field(..., description="One decision per practised skill, with its reason.")
    mastery: dict[str, float] = Field(..., description="Predicted mastery per skill (mean P(correct) of its items).")
    computed_at: datetime
    cached: bool = Field(..., description="Served from the cache (no new interactions since it was computed).")
