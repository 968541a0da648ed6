"""What an entry point (a CLI command, a worker process, the demo) sets up before it calls a use
case: the number of threads torch may use, and the registry."""

from __future__ import annotations

import torch

from aivo.config import Settings, get_settings
from aivo.registry import Registry
from aivo.registry import open_registry as _open_registry


def apply_threads(settings: Settings) -> None:
    """AIVO_NUM_THREADS (0: torch's default, every core)."""
    if settings.num_threads > 0:
        torch.set_num_threads(settings.num_threads)


def open_registry(settings: Settings | None = None, *, check_schema: bool = True) -> Registry:
    """The registry of `settings` (default: the environment's), with torch's threads applied."""
    settings = settings or get_settings()
    apply_threads(settings)
    return _open_registry(settings, check_schema=check_schema)
