"""POST /v1/interactions: a batch of attempts, one object per attempt (aivo.data.schema columns)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ExtraValue = str | int | float | bool | None


class AttemptFields(BaseModel):
    """What one attempt records (aivo.data.schema), the learner aside."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(..., min_length=1, max_length=256)
    skill_ids: str | None = Field(None, max_length=1024, description="';'-separated skills; defaults to item_id.")
    correct: Literal[0, 1] = Field(..., description="1 = correct on the first attempt.")
    order: int = Field(..., ge=0, description="Position in the learner's history (0-based). Resending the same "
                                                "(learner_id, order) is ignored, so retries are safe.")
    timestamp: datetime | None = Field(None, description="When (ISO 8601; UTC if no offset).")
    response_time_s: float | None = Field(None, ge=0)
    subject: str | None = Field(None, max_length=64)
    grade: int | None = Field(None, ge=0, le=12, description="0 = kindergarten.")
    item_type: str | None = Field(None, max_length=64)
    extra: dict[str, ExtraValue] | None = Field(None, max_length=32,
                                                description="Other fields, kept as they are (text is PII-scrubbed).")


class InteractionCreate(AttemptFields):
    """One attempt. `learner_id` is the id your system knows the learner by: the server replaces
    it with a keyed pseudonym before anything is stored. Strings in `extra` are free text: e-mail
    addresses, phone numbers and configured names are redacted before storage."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "learner_id": "student-0042", "item_id": "frac-add-07", "skill_ids": "fractions;addition",
        "correct": 1, "order": 17, "timestamp": "2026-03-02T09:15:00Z", "response_time_s": 12.5,
        "subject": "math", "grade": 5, "item_type": "word_problem", "extra": {"hint_used": False}}]})

    learner_id: str = Field(..., min_length=1, max_length=256)


class InteractionBatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interactions: list[InteractionCreate] = Field(..., min_length=1,
                                                  description="At most AIVO_MAX_INGEST_BATCH (default 10,000).")


class IngestPublic(BaseModel):
    received: int
    inserted: int
    skipped: int = Field(..., description="Already stored (same learner and order).")
    learners: int
    learners_created: int
    tenant: str
