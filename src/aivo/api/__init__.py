"""The AIVO HTTP API (FastAPI). Front door: `create_app(settings=None, *, clock, registry, tutor,
scheduler)`; `aivo serve` runs it with uvicorn."""

from aivo.api.app import create_app

__all__ = ["create_app"]
