"""Standard logging for the service: human-readable by default, JSON lines on request."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(payload)


class StderrHandler(logging.StreamHandler):
    """A StreamHandler on the `sys.stderr` of the moment, not the one at configuration: a command run
    in-process under a redirect (a test's captured stderr, `contextlib.redirect_stderr`) would
    otherwise leave the root logger writing to that stream after it is closed ("--- Logging error
    --- ValueError: I/O operation on closed file" for every later record)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler.__init__ / setStream: always sys.stderr
        pass


def configure_logging(level: str = "INFO", *, json_lines: bool = False) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_aivo", False):
            root.removeHandler(handler)
    handler = StderrHandler()
    handler._aivo = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if json_lines else
                         logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter (e.g. matplotlib's "categorical units" notes) stays out of user output.
    # Alembic announces each of its autogenerate plugins at INFO ("setup plugin ...") on every migration.
    for noisy in ("matplotlib", "PIL", "urllib3", "httpx", "filelock", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
