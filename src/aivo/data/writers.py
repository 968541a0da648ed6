"""One front door for writing interaction logs: `write_interactions(log, path)`, format by suffix."""

from __future__ import annotations

import os
from pathlib import Path

from aivo.data.csv_log import write_csv_log
from aivo.data.kt_format import write_kt_lines
from aivo.data.parquet_log import write_parquet_log
from aivo.data.schema import InteractionLog
from aivo.errors import DataError

_WRITERS = {".csv": write_csv_log, ".tsv": write_csv_log, ".parquet": write_parquet_log,
            ".pq": write_parquet_log, ".kt": write_kt_lines}


def write_interactions(log: InteractionLog, path: str | Path) -> Path:
    """Write `log` to `path` (.parquet/.pq, .csv/.tsv or .kt) atomically: a reader never sees a
    half-written file. Returns the path written."""
    path = Path(path)
    writer = _WRITERS.get(path.suffix.lower())
    if writer is None:
        raise DataError(f"cannot tell the output format from the suffix {path.suffix!r}; use one of: "
                        f"{', '.join(sorted(_WRITERS))}", path=str(path))
    if path.parent and not path.parent.exists():
        raise DataError("the output folder does not exist", path=str(path))
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        writer(log, temp)
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()
    return path
