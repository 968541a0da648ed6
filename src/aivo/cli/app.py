"""The root Typer app and the helpers every command module shares.

Command modules (`aivo.cli.<area>`) register their commands on `app` (or add a sub-app) and
stay thin: parse options, call one service function, format the result.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from aivo.config import Settings, get_settings
from aivo.logging_setup import configure_logging

if TYPE_CHECKING:
    from aivo.registry import Registry

app = typer.Typer(
    name="aivo",
    help="AIVO: a personal, private AI model for every K-12 learner.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

VERBOSE = False  # --verbose: also show the traceback of errors that are reported as messages

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Log at DEBUG level and show tracebacks of reported errors."),
) -> None:
    global VERBOSE
    VERBOSE = verbose
    settings = get_settings()
    configure_logging("DEBUG" if verbose else settings.log_level, json_lines=settings.log_json)


def settings() -> Settings:
    return get_settings()


def registry(*, threads: bool = False) -> Registry:
    """The registry of the settings (schema checked); `threads`: also apply AIVO_NUM_THREADS to
    torch (commands that train)."""
    # start-up: the registry's libraries (SQLAlchemy, pandas) load only for commands that use it
    from aivo.services.runtime import open_registry

    return open_registry(settings(), threads=threads)


def current_user() -> str:
    """Who runs the command (the OS user), for the audit log."""
    from aivo.services.runtime import default_actor  # start-up: loads the registry's libraries

    return default_actor()


def stored_learner(learner: str, is_pseudonym: bool) -> str:
    """A LEARNER argument as stored: raw ids are pseudonymized with the secret key."""
    from aivo.services.learners import learner_pseudonym  # start-up: loads the registry's libraries

    return learner_pseudonym(settings=settings(), learner_id=learner, is_pseudonym=is_pseudonym)


def _default(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def to_jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_default))


def emit(result: Any, *, as_json: bool, render: Callable[[Any], None] | None = None) -> None:
    """Print `result` as JSON (for scripts) or through `render` (for people)."""
    if as_json or render is None:
        sys.stdout.write(json.dumps(result, default=_default, indent=2) + "\n")
        sys.stdout.flush()
    else:
        render(result)
