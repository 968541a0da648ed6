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


def configure_logging(level: str = "INFO", *, json_lines: bool = False) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_aivo", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._aivo = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if json_lines else
                         logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter (e.g. matplotlib's "categorical units" notes) stays out of user output.
    # Alembic announces each of its autogenerate plugins at INFO ("setup plugin ...") on every migration.
    for noisy in ("matplotlib", "PIL", "urllib3", "httpx", "filelock", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
