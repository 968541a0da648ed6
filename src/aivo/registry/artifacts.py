"""The artifact store: immutable blobs addressed by their sha256.

Layout under the store root: `sha256/<first two hex>/<digest>` for artifacts and `tmp/` for
writes in progress. Local folders are written atomically (temp file, fsync, rename, fsync of
the folder); object stores (S3 and friends, through fsspec) are written with one PUT, which
they make visible whole or not at all. Every load recomputes the hash: a corrupted or
truncated artifact raises `IntegrityError` and is never returned.

Weights go in as safetensors with AIVO's JSON metadata in the safetensors header
(`put_tensors` / `load_tensors`), so tensors and metadata stay one immutable unit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aivo.errors import ConfigError, IntegrityError, NotFoundError
from aivo.utils import durable_file, fsync_dir, restrict_to_owner

if TYPE_CHECKING:
    import torch

    from aivo.config import Settings

log = logging.getLogger(__name__)

ARTIFACT_DIR = "sha256"
TEMP_DIR = "tmp"
METADATA_KEY = "aivo.metadata"  # the safetensors header entry that holds AIVO's JSON metadata
_CHUNK = 1 << 20
# Storing content that is already there refreshes the stored copy's modification time when it is
# older than this, so that garbage collection (which only deletes unreferenced artifacts older
# than its min age, an hour by default) never deletes an artifact that is being referenced again.
REFRESH_AFTER_S = 600.0
# Object stores where a single PUT is atomic; other fsspec backends get temp-then-move.
_ATOMIC_PUT_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"}


@dataclass(frozen=True)
class ArtifactRef:
    """What a registry row stores about an artifact."""

    sha256: str
    size: int


@dataclass(frozen=True)
class StoredArtifact:
    sha256: str
    size: int
    modified: datetime


def is_digest(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not is_digest(digest):
        raise IntegrityError(f"not a sha256 artifact digest: {digest!r}")
    return digest


def _make_private_dir(path: Path, *, create: bool = True) -> None:
    """The store's root folder, owner only (0700): created so, tightened if it is not."""
    if create and not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    restrict_to_owner(path)


class _LocalBackend:
    """A folder on a local (or mounted) file system."""

    def __init__(self, root: Path):
        self.root = root
        _make_private_dir(root, create=False)

    def _path(self, key: str) -> Path:
        return self.root / key

    def write_atomic(self, key: str, chunks: Iterator[bytes]) -> None:
        final = self._path(key)
        tmp_dir = self.root / TEMP_DIR
        if not tmp_dir.exists():
            _make_private_dir(self.root)
            tmp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not final.parent.exists():
            for folder in reversed([final.parent, *final.parent.parents]):  # each level 0700
                if folder.is_relative_to(self.root) and not folder.exists():
                    folder.mkdir(mode=0o700, exist_ok=True)
            fsync_dir(final.parent.parent)
        # Immutable by convention (nobody edits an artifact in place), and the owner's only:
        # artifacts hold learners' personal parameters.
        with durable_file(final, temp_dir=tmp_dir, create_mode=0o600, final_mode=0o400) as tmp:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def size(self, key: str) -> int | None:
        found = self.stat(key)
        return None if found is None else found[0]

    def stat(self, key: str) -> tuple[int, datetime] | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc)

    def refresh(self, key: str, chunks: Iterator[bytes]) -> bool:
        """Set the modification time to now; False when the file is gone (write it again)."""
        try:
            os.utime(self._path(key))
            return True
        except FileNotFoundError:
            return False

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def list(self, prefix: str) -> Iterator[tuple[str, int, datetime]]:
        base = self.root / prefix
        if not base.exists():
            return
        for path in base.rglob("*"):
            if path.is_file():
                st = path.stat()
                yield (path.relative_to(self.root).as_posix(), st.st_size,
                       datetime.fromtimestamp(st.st_mtime, timezone.utc))




class _FsspecBackend:
    """Any fsspec file system (s3://bucket/prefix, memory://, ...)."""

    def __init__(self, url: str, storage_options: Mapping[str, Any]):
        # start-up: fsspec loads only for remote stores (S3, ...)
        import fsspec

        self.fs, self.root = fsspec.core.url_to_fs(url, **dict(storage_options))
        self.root = self.root.rstrip("/")
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        self.atomic_put = protocol in _ATOMIC_PUT_PROTOCOLS

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def write_atomic(self, key: str, chunks: Iterator[bytes]) -> None:
        data = b"".join(chunks)
        if self.atomic_put:
            self.fs.pipe_file(self._path(key), data)
        else:
            tmp = self._path(f"{TEMP_DIR}/{uuid.uuid4().hex}.part")
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, self._path(key))
        self.fs.invalidate_cache()

    def read(self, key: str) -> bytes:
        return self.fs.cat_file(self._path(key))

    def size(self, key: str) -> int | None:
        found = self.stat(key)
        return None if found is None else found[0]

    def stat(self, key: str) -> tuple[int, datetime] | None:
        self.fs.invalidate_cache(self._path(key))
        try:
            info = self.fs.info(self._path(key))
        except FileNotFoundError:
            return None
        return int(info.get("size") or 0), _modified(info)

    def refresh(self, key: str, chunks: Iterator[bytes]) -> bool:
        """Object stores cannot touch an object: write the same content again."""
        self.write_atomic(key, chunks)
        return True

    def delete(self, key: str) -> bool:
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError:
            return False
        self.fs.invalidate_cache()
        return True

    def list(self, prefix: str) -> Iterator[tuple[str, int, datetime]]:
        self.fs.invalidate_cache()
        base = self._path(prefix)
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return
        for path, info in found.items():
            if info.get("type", "file") != "file":
                continue
            modified = _modified(info)
            root, found_path = self.root.strip("/"), path.strip("/")
            rel = found_path[len(root):].lstrip("/") if found_path.startswith(root) else found_path
            yield rel, int(info.get("size") or 0), modified


def _modified(info: Mapping[str, Any]) -> datetime:
    modified = info.get("LastModified") or info.get("mtime") or info.get("created")
    if isinstance(modified, (int, float)):
        return datetime.fromtimestamp(modified, timezone.utc)
    if isinstance(modified, datetime):
        return modified if modified.tzinfo is not None else modified.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(0, timezone.utc)  # unknown age: treated as old


class ArtifactStore:
    """Content-addressed, immutable, verified-on-load artifact storage.

    `url` is a folder path (or file://...) or any fsspec URL such as `s3://bucket/prefix`;
    `storage_options` go to fsspec (for S3: `key`, `secret`, `client_kwargs={"endpoint_url": ...}`).
    """

    def __init__(self, url: str, *, storage_options: Mapping[str, Any] | None = None):
        self.url = url
        if "://" not in url or url.startswith("file://"):
            root = Path(url[len("file://"):] if url.startswith("file://") else url).expanduser()
            self._backend: _LocalBackend | _FsspecBackend = _LocalBackend(root)
            self.is_local = True
        else:
            try:
                self._backend = _FsspecBackend(url, storage_options or {})
            except (ImportError, ValueError) as exc:
                raise ConfigError(f"cannot open artifact store {url!r}: {exc}") from exc
            self.is_local = False

    @classmethod
    def from_settings(cls, settings: "Settings") -> "ArtifactStore":
        return cls(settings.resolved_artifact_url, storage_options=settings.resolved_artifact_options)

    @staticmethod
    def key(digest: str) -> str:
        return f"{ARTIFACT_DIR}/{digest[:2]}/{digest}"

    # --- writing ------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> ArtifactRef:
        """Store `data`; return its reference once it is durable. Identical content is stored once."""
        digest = hashlib.sha256(data).hexdigest()
        self._store(self.key(digest), len(data), lambda: iter((data,)))
        return ArtifactRef(sha256=digest, size=len(data))

    def _store(self, key: str, size: int, chunks) -> None:
        """Write `chunks()` at `key` unless an intact-sized copy is there; refresh an old copy's
        modification time (see REFRESH_AFTER_S) so GC treats it as just stored."""
        found = self._backend.stat(key)
        if found is not None and found[0] == size:
            age = (datetime.now(timezone.utc) - found[1]).total_seconds()
            if age < REFRESH_AFTER_S or self._backend.refresh(key, chunks()):
                return
        self._backend.write_atomic(key, chunks())  # absent, gone meanwhile, or a damaged copy to replace
        log.debug("stored artifact %s (%d bytes)", key, size)

    def put_file(self, path: str | Path) -> ArtifactRef:
        """Store a file's content (read twice in chunks: once to hash, once to copy)."""
        path = Path(path)
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        ref = ArtifactRef(sha256=digest.hexdigest(), size=size)

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    yield chunk
        self._store(self.key(ref.sha256), size, chunks)
        return ref

    def put_tensors(self, tensors: Mapping[str, "torch.Tensor"], *,
                    metadata: Mapping[str, Any] | None = None) -> ArtifactRef:
        """Store tensors as safetensors with `metadata` (JSON-serializable) in the header."""
        return self.put_bytes(encode_tensors(tensors, metadata=metadata))

    # --- reading ------------------------------------------------------------------------
    def get_bytes(self, digest: str) -> bytes:
        """The artifact's content, after checking it still hashes to `digest`."""
        key = self.key(_check_digest(digest))
        try:
            data = self._backend.read(key)
        except FileNotFoundError:
            raise IntegrityError(f"artifact {digest} is missing from the store {self.url}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise IntegrityError(f"artifact {digest} is corrupted or truncated ({len(data)} bytes hash to "
                                 f"{actual}); refusing to load it")
        return data

    def load_tensors(self, digest: str, *, device: str = "cpu") -> tuple[dict[str, "torch.Tensor"], dict]:
        """(tensors, metadata) of a verified safetensors artifact."""
        return decode_tensors(self.get_bytes(digest), device=device, digest=digest)

    def verify(self, digest: str) -> ArtifactRef:
        """Raise `IntegrityError` unless the artifact is present and intact."""
        return ArtifactRef(sha256=digest, size=len(self.get_bytes(digest)))

    def exists(self, digest: str) -> bool:
        return self._backend.size(self.key(_check_digest(digest))) is not None

    def size(self, digest: str) -> int:
        size = self._backend.size(self.key(_check_digest(digest)))
        if size is None:
            raise NotFoundError(f"artifact {digest} is not in the store {self.url}")
        return size

    def modified(self, digest: str) -> datetime | None:
        """When the artifact was last stored (or refreshed); None when it is not there."""
        found = self._backend.stat(self.key(_check_digest(digest)))
        return None if found is None else found[1]

    def iter_artifacts(self) -> Iterator[StoredArtifact]:
        """Every artifact in the store (name-checked only; use `verify` for content)."""
        for key, size, modified in self._backend.list(ARTIFACT_DIR):
            name = key.rsplit("/", 1)[-1]
            if is_digest(name):
                yield StoredArtifact(sha256=name, size=size, modified=modified)

    # --- removal (garbage collection and erasure only) ----------------------------------
    def delete(self, digest: str) -> bool:
        """Remove an artifact. Only GC and learner erasure call this, after checking references."""
        return self._backend.delete(self.key(_check_digest(digest)))

    def remove_stale_temp_files(self, *, older_than: datetime) -> int:
        """Delete leftovers of writes that died midway (they were never visible as artifacts)."""
        removed = 0
        for key, _size, modified in list(self._backend.list(TEMP_DIR)):
            if modified < older_than and self._backend.delete(key):
                removed += 1
        return removed


def encode_tensors(tensors: Mapping[str, "torch.Tensor"], *, metadata: Mapping[str, Any] | None = None) -> bytes:
    # start-up: safetensors.torch loads torch, which registry commands do not need
    from safetensors.torch import save

    prepared = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    header = {METADATA_KEY: json.dumps(dict(metadata or {}), sort_keys=True, separators=(",", ":"))}
    return save(prepared, metadata=header)


def decode_tensors(data: bytes, *, device: str = "cpu", digest: str = "<bytes>") -> tuple[dict, dict]:
    # start-up: safetensors.torch loads torch, which registry commands do not need
    from safetensors.torch import load

    try:
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + header_len])
        metadata = json.loads(header.get("__metadata__", {}).get(METADATA_KEY, "{}"))
        tensors = load(data)
    except Exception as exc:  # intact bytes that are not safetensors: a caller mix-up, not damage
        raise IntegrityError(f"artifact {digest} is not a safetensors file: {exc}") from exc
    if device != "cpu":
        tensors = {name: t.to(device) for name, t in tensors.items()}
    return tensors, metadata
