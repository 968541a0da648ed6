"""One front door for reading interaction logs: `read_interactions(path, format=...)`.

Readers are plugins registered by name; the registry rejects unknown and duplicate names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from aivo.data.csv_log import read_csv_log
from aivo.data.kt_format import read_kt_lines
from aivo.data.parquet_log import read_parquet_log
from aivo.data.schema import InteractionLog
from aivo.errors import DataError

Reader = Callable[..., InteractionLog]
_READERS: dict[str, Reader] = {}
_SUFFIXES: dict[str, str] = {}


def register_reader(name: str, reader: Reader, *, suffixes: tuple[str, ...] = ()) -> None:
    if name in _READERS:
        raise ValueError(f"reader {name!r} is already registered")
    _READERS[name] = reader
    for suffix in suffixes:
        _SUFFIXES[suffix.lower()] = name


def reader_names() -> list[str]:
    return sorted(_READERS)


def detect_format(path: Path) -> str:
    """Guess the format: by suffix, else sniff the first line (a bare integer means KT lines)."""
    name = _SUFFIXES.get(path.suffix.lower())
    if path.suffix.lower() in (".csv", ".txt") and path.exists():
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = next((line for line in fh if line.strip()), "")
        if first.strip().rstrip(",").isdigit():
            return "kt"
    if name is None:
        raise DataError(f"cannot tell the format from the suffix {path.suffix!r}; "
                        f"pass one of: {', '.join(reader_names())}", path=str(path))
    return name


def read_interactions(path: str | Path, *, format: str = "auto",
                      mapping: Mapping[str, str] | None = None) -> InteractionLog:
    """Read a file into a validated `InteractionLog`.

    `mapping` renames source columns to schema columns (`{"schema_name": "source_name"}`)
    for tabular formats."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=str(path))
    if path.is_dir():
        raise DataError("is a folder, expected a file", path=str(path))
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in _READERS:
        raise DataError(f"unknown format {fmt!r}; known: {', '.join(reader_names())}", path=str(path))
    reader = _READERS[fmt]
    if fmt == "kt":
        if mapping:
            raise DataError("a column mapping does not apply to the three-line KT format", path=str(path))
        return reader(path)
    return reader(path, mapping=mapping)


def _register_builtin() -> None:
    register_reader("kt", read_kt_lines, suffixes=(".kt",))
    register_reader("csv", read_csv_log, suffixes=(".csv", ".tsv"))
    register_reader("parquet", read_parquet_log, suffixes=(".parquet", ".pq"))


_register_builtin()
