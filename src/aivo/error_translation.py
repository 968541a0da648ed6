"""Turn the exceptions that third-party libraries raise for a user's or an operator's mistake
into `AivoError`s with a message a person can act on.

The CLI (`aivo.cli.main`) and the API's exception handlers call `translate` on anything that is
not already an `AivoError`; `None` means "a bug": keep the traceback.

- an invalid setting (pydantic `ValidationError` of `Settings`, from the environment or `.env`)
  -> `ConfigError` naming each variable, the value and what is wrong;
- invalid input a command built into a request model -> `InvalidInputError`;
- a database that cannot be reached (connection refused, unknown host, auth failure, a locked
  SQLite file beyond the busy timeout) -> `UnavailableError` (exit 10, HTTP 503), without the
  password of the URL;
- a file that is not an SQLite database -> `ConfigError`;
- an Alembic command error (unknown revision) -> `ConfigError`;
- an operating-system error on a path (permission denied, disk full, not a folder) -> `AivoError`
  with the path (CLI only: in a server it is the operator's problem and stays a logged 500).
"""

from __future__ import annotations

from alembic.util.exc import CommandError
from pydantic import ValidationError
from sqlalchemy.exc import DatabaseError, InterfaceError, OperationalError

from aivo.errors import AivoError, ConfigError, InvalidInputError, UnavailableError

_MAX_LISTED = 5


def _pydantic_lines(exc) -> list[str]:
    lines = []
    for error in exc.errors()[:_MAX_LISTED]:
        where = ".".join(str(p) for p in error.get("loc", ())) or "value"
        given = error.get("input")
        shown = f" (got {given!r})" if isinstance(given, (str, int, float, bool)) and len(repr(given)) < 80 else ""
        lines.append(f"{where}: {error.get('msg', 'invalid')}{shown}")
    extra = len(exc.errors()) - _MAX_LISTED
    if extra > 0:
        lines.append(f"(and {extra} more)")
    return lines


def _database_error(exc) -> AivoError | None:
    if not isinstance(exc, (OperationalError, InterfaceError, DatabaseError)):
        return None
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = reason[0] if reason else type(exc).__name__
    if "file is not a database" in reason or "file is encrypted" in reason:
        return ConfigError(f"the registry database is not an SQLite database ({reason}); "
                           "check AIVO_HOME / AIVO_DATABASE_URL")
    if isinstance(exc, (OperationalError, InterfaceError)):
        return UnavailableError(f"the registry database is unavailable: {reason}. Check AIVO_DATABASE_URL "
                                "and that the database server is running.")
    return None


def translate(exc: BaseException, *, for_cli: bool = True) -> AivoError | None:
    """The `AivoError` that `exc` stands for, or None when `exc` is a bug."""
    if isinstance(exc, AivoError):
        return exc
    if isinstance(exc, ValidationError):
        lines = _pydantic_lines(exc)
        if exc.title == "Settings":
            return ConfigError("invalid configuration (environment or .env): " + "; ".join(lines))
        return InvalidInputError("invalid input: " + "; ".join(lines))
    database = _database_error(exc)
    if database is not None:
        return database
    if isinstance(exc, CommandError):
        return ConfigError(f"migration failed: {exc}")
    if for_cli and isinstance(exc, OSError) and exc.filename is not None:
        return AivoError(f"{exc.strerror or exc}: {exc.filename}")
    return None
