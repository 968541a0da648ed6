"""Parquet event logs: one interaction per row. Rows have no line numbers, so errors name the
1-based row (`file.parquet: row 17: ...`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aivo.data.schema import InteractionLog
from aivo.data.tabular import conform_table
from aivo.errors import DataError


class ParquetLocator:
    def __init__(self, path: Path):
        self.source = str(path)

    def row_label(self, row: int) -> str:
        return f"row {row + 1}"

    def header_error(self, message: str) -> DataError:
        return DataError(message, path=self.source)

    def row_error(self, message: str, row: int) -> DataError:
        return DataError(f"row {row + 1}: {message}", path=self.source)


def read_parquet_log(path: str | Path, *, mapping: Mapping[str, str] | None = None) -> InteractionLog:
    """Read a Parquet event log. `mapping` is `{"schema column": "source column"}`."""
    path = Path(path)
    where = ParquetLocator(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    if path.stat().st_size == 0:
        raise DataError("empty file: not a Parquet file", path=str(path))
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"not a readable Parquet file ({exc})", path=str(path)) from None
    if table.num_columns == 0:
        raise DataError("the Parquet file has no columns", path=str(path))
    try:
        raw = table.to_pandas()
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise DataError(f"cannot convert the Parquet columns ({exc})", path=str(path)) from None
    for name in raw.columns:
        if isinstance(raw[name].dtype, pd.CategoricalDtype):
            raw[name] = raw[name].astype(object)  # dictionary-encoded columns: plain values
    if len(raw) == 0:
        raise where.header_error("no data rows: the file has columns but no rows")
    return conform_table(raw, mapping=mapping, where=where)


def write_parquet_log(log: InteractionLog, path: str | Path) -> None:
    log.frame.to_parquet(path, index=False)
