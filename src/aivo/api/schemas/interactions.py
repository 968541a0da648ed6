"""POST /v1/interactions: a batch of attempts, one object per attempt (aivo.data.schema columns)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, PlainValidator, StringConstraints, WithJsonSchema, field_validator

from aivo.api.schemas.common import Id, RequestModel, Timestamp
from aivo.data.schema import CORE_COLUMNS, EVALUATION_ONLY_COLUMNS, MAX_ORDER
from aivo.utils import JsonInt, integral

MAX_EXTRA_TEXT = 1024  # characters of one string value of `extra`
MAX_RESPONSE_TIME_S = 86_400.0  # a day: longer is a logging mistake, not an answer
# `extra` may not hold what the interaction has fields for, nor the simulator's evaluation-only truth.
RESERVED_EXTRA_KEYS = tuple(sorted({*CORE_COLUMNS, "extra", *EVALUATION_ONLY_COLUMNS}))
ExtraKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
_INT64 = (-(2**63), 2**63 - 1)


def _extra_value(value: Any) -> Any:
    """One JSON value of `extra`, kept with its type: text, a 64-bit whole number, a finite number,
    true/false or null (never coerced: false stays false, 3 stays 3)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        return value
    if isinstance(value, float) and math.isfinite(value):
        # JSON Schema counts 1e20 as an integer: a whole number must fit 64 bits however it is written
        if not value.is_integer() or _INT64[0] <= value <= _INT64[1]:
            return value
    if isinstance(value, str) and len(value) <= MAX_EXTRA_TEXT:
        return value
    raise ValueError(f"an 'extra' value is text of at most {MAX_EXTRA_TEXT} characters, a whole number within "
                     f"64 bits, a finite number, true, false or null; got {str(value)[:40]!r}")


ExtraValue = Annotated[Any, PlainValidator(_extra_value), WithJsonSchema({"anyOf": [
    {"type": "string", "maxLength": MAX_EXTRA_TEXT}, {"type": "integer", "minimum": _INT64[0], "maximum": _INT64[1]},
    {"type": "number", "not": {"type": "integer"}}, {"type": "boolean"}, {"type": "null"}]})]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # JSON true is not the number 1
        raise ValueError("must be the number 0 or 1, not true/false")
    return value


def _extra_schema(schema: dict) -> None:
    schema.setdefault("propertyNames", {})["not"] = {"enum": list(RESERVED_EXTRA_KEYS)}


class AttemptFields(RequestModel):
    """What one attempt records (aivo.data.schema), the learner aside."""

    item_id: Id
    skill_ids: str | None = Field(None, max_length=1024, description="';'-separated skills; defaults to item_id.")
    correct: Annotated[Literal[0, 1], BeforeValidator(_not_bool), BeforeValidator(integral)] = Field(
        ..., description="1 = correct on the first attempt.")
    order: JsonInt = Field(..., ge=0, le=MAX_ORDER, description="Position in the learner's history (0-based). Resending "
                                                             "the same (learner_id, order) is ignored, so retries are safe.")
    timestamp: Timestamp | None = Field(None, description="When: RFC 3339 with its UTC offset, years 1900-2099.")
    response_time_s: float | None = Field(None, ge=0, le=MAX_RESPONSE_TIME_S)
    subject: str | None = Field(None, max_length=64)
    grade: JsonInt | None = Field(None, ge=0, le=12, description="0 = kindergarten.")
    item_type: str | None = Field(None, max_length=64)
    extra: dict[ExtraKey, ExtraValue] | None = Field(
        None, max_length=32, json_schema_extra=_extra_schema,
        description=(f"Other fields, kept with their JSON types (text is PII-scrubbed): at most 32, keys of 1-64 "
                     f"characters, text values of at most {MAX_EXTRA_TEXT} characters, finite numbers. Keys may not "
                     f"be {', '.join(RESERVED_EXTRA_KEYS)}."))

    @field_validator("extra")
    @classmethod
    def _no_reserved_keys(cls, extra: dict | None) -> dict | None:
        keys = set(extra or ())
        truth = sorted(keys & EVALUATION_ONLY_COLUMNS)
        if truth:
            raise ValueError(f"{', '.join(truth)} is the simulator's evaluation-only truth: no ingest may set it")
        clashing = sorted(keys & set(RESERVED_EXTRA_KEYS))
        if clashing:
            raise ValueError(f"key(s) {', '.join(clashing)} clash with interaction fields; send them as fields of "
                             "the interaction, not in 'extra'")
        return extra


class InteractionCreate(AttemptFields):
    """One attempt. `learner_id` is the id your system knows the learner by: the server replaces
    it with a keyed pseudonym before anything is stored. Strings in `extra` are free text: e-mail
    addresses, phone numbers and configured names are redacted before storage."""

    model_config = dict(AttemptFields.model_config, json_schema_extra={"examples": [{
        "learner_id": "student-0042", "item_id": "frac-add-07", "skill_ids": "fractions;addition",
        "correct": 1, "order": 17, "timestamp": "2026-03-02T09:15:00Z", "response_time_s": 12.5,
        "subject": "math", "grade": 5, "item_type": "word_problem", "extra": {"hint_used": False}}]})

    learner_id: Id


class InteractionBatchCreate(RequestModel):
    interactions: list[InteractionCreate] = Field(..., min_length=1,
                                                  description="At most AIVO_MAX_INGEST_BATCH (default 10,000).")


class IngestPublic(BaseModel):
    received: int
    inserted: int
    skipped: int = Field(..., description="Already stored (same learner and order).")
    learners: int
    learners_created: int
    tenant: str
