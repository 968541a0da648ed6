"""`aivo` command line. `main()` turns user mistakes into a message and an exit code."""

from __future__ import annotations

import sys

from aivo.cli import app as _app_module
from aivo.cli.app import app, err_console
from aivo.errors import AivoError

# Command modules register themselves on `app` when imported.
from aivo.cli import data as _data  # noqa: F401,E402
from aivo.cli import brain as _brain  # noqa: F401,E402
from aivo.cli import registry as _registry  # noqa: F401,E402
from aivo.cli import tutor as _tutor  # noqa: F401,E402
from aivo.cli import serve as _serve  # noqa: F401,E402
from aivo.cli import demo as _demo  # noqa: F401,E402
from aivo.cli import ops as _ops  # noqa: F401,E402
from aivo.cli import federated as _federated  # noqa: F401,E402
from aivo.cli import federation as _federation  # noqa: F401,E402
from aivo.cli import policy as _policy  # noqa: F401,E402


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code. Usage errors are reported by click itself."""
    try:
        app(args=argv, prog_name="aivo")
    except AivoError as exc:
        return _report(exc)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        return 130
    except SystemExit as exc:
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:
        # A library's exception for a user's or operator's mistake (bad setting, unreachable
        # database, unwritable path) becomes its message; anything else is a bug: traceback.
        # start-up: the translation names SQLAlchemy's and Alembic's errors; load them only on an error
        from aivo.error_translation import translate

        translated = translate(exc)
        if translated is None or _app_module.VERBOSE:
            raise
        return _report(translated)
    return 0


def _report(exc: AivoError) -> int:
    err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
    return exc.exit_code


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
