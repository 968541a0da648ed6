"""Models and types shared by several routers.

Request bodies derive from `RequestModel`: strict JSON types (`"5"` is not 5, `0` is not false,
a number is not a date; `5.0` is 5 wherever the schema says integer: `aivo.utils.JsonInt`), finite numbers only (NaN, Infinity and `1e400` are refused) and no
unknown fields. Every string of a request (body, path, query) is free of NUL characters: the
`RequestGuard` middleware refuses them (422) and the OpenAPI document says so on every string
(see aivo.api.openapi).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from aivo.data.schema import TIMESTAMP_YEARS

MAX_INT32 = 2**31 - 1  # ids are 32-bit integers in PostgreSQL
MAX_OFFSET = MAX_INT32


# Text with at least one character that is not whitespace (as Python's str.strip() sees it) and no
# NUL: ids are trimmed before use, so a blank one names nothing.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NON_BLANK_PATTERN = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"
_NON_BLANK_RE = re.compile(NON_BLANK_PATTERN)


def _non_blank(value: Any) -> Any:
    if isinstance(value, str) and "\x00" not in value and not value.strip():
        raise ValueError("must not be blank")
    return value


# An id (learner, item): 1-256 characters, not blank.
Id = Annotated[str, Field(min_length=1, max_length=256, pattern=None), AfterValidator(_non_blank),
               WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 256, "pattern": NON_BLANK_PATTERN})]


def _non_finite_at(value: Any, where: str) -> str | None:
    """Where a free-form JSON value (a `dict[str, Any]` field: a job's config or policy) holds a
    NaN or an infinity, or None: `allow_inf_nan=False` covers typed float fields only."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite_at(item, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}")
        if found:
            return found
    return None


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _finite_everywhere(self):
        # Numbers anywhere are finite (docs/api.md, Limits), free-form objects included: NaN,
        # Infinity and 1e400 in a job's config or policy would otherwise be queued (and PostgreSQL's
        # JSONB cannot store them).
        for name, value in self.__dict__.items():
            if isinstance(value, (dict, list)):
                found = _non_finite_at(value, name)
                if found:
                    raise ValueError(f"{found}: numbers must be finite (NaN, Infinity and 1e400 are refused)")
        return self


class ErrorResponse(BaseModel):
    """Every error: a message a person can act on. Validation errors (422) also list each
    problem in `errors`."""

    detail: str = Field(..., examples=["learner not found (no learner with this id in this key's tenant)"])
    errors: list[dict[str, Any]] | None = Field(
        None, description="Validation errors only (422): `loc` (where), `msg` and `type` of each problem.")


# --- timestamps ------------------------------------------------------------------------------
_YEAR = "(19|20)[0-9]{2}"  # TIMESTAMP_YEARS (1900-2099) as a pattern; a test checks the two agree
TIMESTAMP_PATTERN = (rf"^{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                     r"(\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
_TIMESTAMP_RE = re.compile(TIMESTAMP_PATTERN)
TIMESTAMP_DOC = ("RFC 3339 date-time with its UTC offset (`2026-03-02T09:15:00Z`, `2026-03-02T10:15:00+01:00`), "
                 f"years {TIMESTAMP_YEARS[0]}-{TIMESTAMP_YEARS[1]}; stored in UTC.")


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("a timestamp is an RFC 3339 string such as 2026-03-02T09:15:00Z")
    if not _TIMESTAMP_RE.match(value):
        raise ValueError(f"timestamp {value[:40]!r} is not an RFC 3339 date-time with a UTC offset "
                         f"(e.g. 2026-03-02T09:15:00Z) in the years {TIMESTAMP_YEARS[0]}-{TIMESTAMP_YEARS[1]}")
    return datetime.fromisoformat(value).astimezone(timezone.utc)  # ValueError for 2026-02-30


Timestamp = Annotated[datetime, BeforeValidator(_timestamp), WithJsonSchema(
    {"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN, "description": TIMESTAMP_DOC})]


# --- documented error answers ------------------------------------------------------------------
def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


ERROR_RESPONSES = {
    401: _error("Missing, invalid or revoked API key."),
    403: _error("The key's role may not use this endpoint."),
}
LEARNER_ERRORS = {
    **ERROR_RESPONSES,
    404: _error("No such learner in the key's tenant."),
}
