"""User-facing errors. Anything raised as an `AivoError` is the user's mistake or an expected
condition: the CLI prints its message and exits with `exit_code`, the API answers with
`http_status`. Everything else is a bug and keeps its traceback."""

from __future__ import annotations


class AivoError(Exception):
    exit_code = 1
    http_status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConfigError(AivoError):
    exit_code = 2
    http_status = 500


class ServiceConfigError(ConfigError):
    """The server is configured so that a capability cannot run (a model that is not on disk, a
    GPU that is not there): the API answers 503, the CLI exits 2."""

    http_status = 503


class DataError(AivoError):
    """Malformed input data. Carries the file and line where it was found."""

    exit_code = 3
    http_status = 422

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class NotFoundError(AivoError):
    exit_code = 4
    http_status = 404


class ConflictError(AivoError):
    exit_code = 5
    http_status = 409


class IntegrityError(AivoError):
    """Stored state failed a check (artifact hash mismatch, truncated file)."""

    exit_code = 6
    http_status = 500


class SchemaOutdatedError(AivoError):
    exit_code = 7
    http_status = 503


class AuthError(AivoError):
    exit_code = 9
    http_status = 401


class ForbiddenError(AivoError):
    exit_code = 9
    http_status = 403


class PayloadTooLargeError(AivoError):
    """A request or batch above a configured size limit."""

    exit_code = 3
    http_status = 413


class InvalidInputError(AivoError):
    """A value given on the command line or in a request does not validate."""

    exit_code = 2
    http_status = 422


class UnavailableError(AivoError):
    """A service AIVO depends on (the database) cannot be reached right now."""

    exit_code = 10
    http_status = 503
