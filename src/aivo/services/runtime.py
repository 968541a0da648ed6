"""What an entry point (a CLI command, the API, a worker process, the demo) sets up before it
calls a use case: the number of threads torch may use, the registry, who is acting."""

from __future__ import annotations

from aivo.config import Settings, get_settings
from aivo.registry import Registry, default_actor
from aivo.registry import open_registry as _open_registry

__all__ = ["apply_threads", "default_actor", "open_registry"]


def apply_threads(settings: Settings) -> None:
    """AIVO_NUM_THREADS (0: torch's default, every core)."""
    if settings.num_threads > 0:
        import torch  # start-up: commands that never train do not load torch

        torch.set_num_threads(settings.num_threads)


def open_registry(settings: Settings | None = None, *, check_schema: bool = True, threads: bool = True) -> Registry:
    """The registry of `settings` (default: the environment's); with `threads`, torch's thread
    count is applied too (a command or worker that trains; the API leaves torch's default)."""
    settings = settings or get_settings()
    if threads:
        apply_threads(settings)
    return _open_registry(settings, check_schema=check_schema)
