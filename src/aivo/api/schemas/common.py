"""Models shared by several routers."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    """Every error: a message a person can act on. Validation errors also list each problem."""

    detail: str = Field(..., examples=["learner not found (no learner with this id in this key's tenant)"])
    errors: list[dict] | None = Field(None, description="Validation errors only: location and message of each.")


ERROR_RESPONSES = {
    401: {"model": ErrorResponse, "description": "Missing, invalid or revoked API key."},
    403: {"model": ErrorResponse, "description": "The key's role may not use this endpoint."},
}
LEARNER_ERRORS = {
    **ERROR_RESPONSES,
    404: {"model": ErrorResponse, "description": "No such learner in the key's tenant."},
}
