"""Small helpers shared across layers: durable file and folder writes, owner-only permissions, reading ahead in
threads, pausing the garbage collector, the whole-number type of strict request models."""

from __future__ import annotations

import gc
import os
import secrets
import shutil
import stat
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator


@contextmanager
def durable_file(target: str | Path, *, temp_dir: str | Path | None = None, create_mode: int = 0o666,
                 final_mode: int | None = None) -> Iterator[Path]:
    """The one way AIVO replaces a file: write to the path this yields, and on success it is
    fsynced, renamed over `target` and the folder fsynced. After a crash at any point `target` is
    the old file or the new one, complete, never a mixture; on an exception the temporary file
    is removed and `target` is left as it was.

    The temporary file is created (exclusively) in `temp_dir` (default: `target`'s folder, which
    must be on the same file system) with `create_mode` (the umask applies: 0o666 gives a user's
    own output files their usual permissions; pass 0o600 for private data); `final_mode`, when
    given, is set before the rename (0o400 for immutable artifacts)."""
    target = Path(target)
    folder = Path(temp_dir) if temp_dir is not None else target.parent
    tmp = folder / f".{target.name}.{secrets.token_hex(6)}.part"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, create_mode))
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if final_mode is not None:
            os.chmod(tmp, final_mode)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)  # gone after the rename; left behind by an exception


@contextmanager
def durable_folder(target: str | Path) -> Iterator[Path]:
    """`durable_file` for a folder of files (a model written by `save_pretrained`): fill the
    folder this yields (a fresh one next to `target`); on success its files and itself are
    fsynced, an existing `target` is removed, the new folder renamed into its place and the
    parent fsynced. On an exception the new folder is removed and `target` is left as it was.
    A crash between the removal and the rename leaves no `target`: callers find the folder
    missing and write it again."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        for path in sorted(staging.rglob("*"), reverse=True):  # files before their folders
            if path.is_file():
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            else:
                fsync_dir(path)
        fsync_dir(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def fsync_dir(path: str | Path) -> None:
    """Make a folder's entries (a rename, a new file or subfolder) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def restrict_to_owner(path: str | Path) -> int | None:
    """Take the group and other permission bits off `path` when this user owns it. Returns the
    new mode, or None when nothing changed (missing, already private, or another user's)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    if not info.st_mode & 0o077 or info.st_uid != os.getuid():
        return None
    mode = stat.S_IMODE(info.st_mode) & 0o700
    os.chmod(path, mode)
    return mode


def read_ahead(func, items, *, depth: int = 4, workers: int = 2):
    """Yield `func(item)` for each item, in order, computing up to `depth` results ahead in
    `workers` threads (for I/O- and hashing-bound work that releases the GIL). Memory is bounded
    by `depth` results; an exception is re-raised when its item's turn comes. Closing the
    generator early cancels what was not started."""
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="aivo-read-ahead") as pool:
        try:
            for item in items:
                pending.append(pool.submit(func, item))
                if len(pending) >= depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = True


@contextmanager
def gc_paused():
    """Pause Python's cyclic garbage collector while building many acyclic objects (rows read from
    the database: tuples, strings, datetimes). Reference counting still frees everything; the
    pause only avoids full collections triggered by the allocations themselves, which made
    reading 30,000 rows take 1.5-2x longer, and erratically, in a process holding many objects.
    Nested and concurrent pauses are counted; the collector resumes (if it was enabled) when
    the last one ends."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def integral(value: Any) -> Any:
    """A JSON number with no fractional part (`12.0`) is the integer 12: JSON Schema's "integer"
    accepts it, so strict request models must too. `12.5`, true/false and "12" are left as they
    are for the strict integer check to refuse."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# The one integer type of strict request bodies (API and tutor): what JSON Schema calls an integer.
JsonInt = Annotated[int, BeforeValidator(integral)]
