"""Raw learner ids enter AIVO only here: they are pseudonymized before touching the registry."""

from __future__ import annotations

from aivo.config import Settings
from aivo.data.privacy import pseudonymize_learner_id
from aivo.errors import DataError


def pseudonym_for(*, settings: Settings, learner_id: str) -> str:
    """The registry key of a learner given the id a school system knows them by."""
    if not isinstance(learner_id, str) or not learner_id.strip():
        raise DataError("a learner id must be a non-empty string")
    return pseudonymize_learner_id(learner_id, key=settings.resolved_secret_key())
