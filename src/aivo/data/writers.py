"""One front door for writing interaction logs: `write_interactions(log, path)`, format by suffix."""

from __future__ import annotations

from pathlib import Path

from aivo.data.csv_log import write_csv_log
from aivo.data.kt_format import write_kt_lines
from aivo.data.parquet_log import write_parquet_log
from aivo.data.schema import InteractionLog
from aivo.errors import DataError
from aivo.utils import durable_file

_WRITERS = {".csv": write_csv_log, ".tsv": write_csv_log, ".parquet": write_parquet_log,
            ".pq": write_parquet_log, ".kt": write_kt_lines}


def check_output_path(path: str | Path) -> Path:
    """Refuse an output path we cannot write (unknown suffix, missing folder) before any work."""
    path = Path(path)
    if path.suffix.lower() not in _WRITERS:
        raise DataError(f"cannot tell the output format from the suffix {path.suffix!r}; use one of: "
                        f"{', '.join(sorted(_WRITERS))}", path=str(path))
    if not path.parent.is_dir():
        raise DataError("the output folder does not exist", path=str(path))
    if path.is_dir():
        raise DataError("is a folder, expected a file name", path=str(path))
    return path


def write_interactions(log: InteractionLog, path: str | Path) -> Path:
    """Write `log` to `path` (.parquet/.pq, .csv/.tsv or .kt) atomically: a reader never sees a
    half-written file. Returns the path written."""
    path = check_output_path(path)
    writer = _WRITERS[path.suffix.lower()]
    if writer is write_kt_lines:
        numeric = log.frame["item_id"].astype("string").str.fullmatch(r"\d+")
        if not numeric.all():
            example = log.frame["item_id"][~numeric.fillna(False)].iloc[0]
            raise DataError(f"the three-line KT format needs whole-number item ids, got {example!r}; "
                            f"write .parquet or .csv instead", path=str(path))
    with durable_file(path) as temp:
        writer(log, temp)
    return path
