"""Learner data: the interaction schema, readers/writers, simulator, PII handling, splits."""

from aivo.data.schema import InteractionLog, make_log, validate_frame

__all__ = ["InteractionLog", "make_log", "validate_frame"]
