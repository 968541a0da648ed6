"""The artifact store: content addressing, atomic writes, verification on load, S3 via moto."""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import stat
from datetime import datetime, timedelta, timezone

import pytest
import torch

from aivo.config import Settings
from aivo.errors import IntegrityError
from aivo.registry import ArtifactStore


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """A moto S3 server on a free loopback port, for this module only."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_store(s3_server, request):
    import s3fs

    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": s3_server,
                                                                        "region_name": "us-west-2"}}
    bucket = f"aivo-{secrets.token_hex(6)}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    return ArtifactStore(f"s3://{bucket}/artifacts", storage_options=options)


@pytest.fixture(params=["local", "s3"])
def any_store(request, tmp_path):
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "store"))
    return request.getfixturevalue("s3_store")


def test_roundtrip_and_content_addressing(any_store):
    data = os.urandom(10_000)
    ref = any_store.put_bytes(data)
    assert ref.sha256 == hashlib.sha256(data).hexdigest() and ref.size == len(data)
    assert any_store.get_bytes(ref.sha256) == data
    assert any_store.put_bytes(data) == ref  # stored once
    assert [a.sha256 for a in any_store.iter_artifacts()] == [ref.sha256]
    assert any_store.exists(ref.sha256) and any_store.size(ref.sha256) == len(data)
    assert any_store.delete(ref.sha256) and not any_store.exists(ref.sha256)
    with pytest.raises(IntegrityError, match="missing"):
        any_store.get_bytes(ref.sha256)


def test_tensors_with_metadata(any_store):
    gen = torch.Generator().manual_seed(0)
    tensors = {"head.weight": torch.randn(4, 3, generator=gen), "head.bias": torch.zeros(4),
               "emb": torch.arange(6, dtype=torch.int64)}
    meta = {"kind": "brain.head", "main_version": "v1", "shape": [4, 3]}
    ref = any_store.put_tensors(tensors, metadata=meta)
    assert any_store.put_tensors(tensors, metadata=meta) == ref  # deterministic bytes
    loaded, loaded_meta = any_store.load_tensors(ref.sha256)
    assert loaded_meta == meta
    assert set(loaded) == set(tensors) and all(torch.equal(loaded[k], tensors[k]) for k in tensors)


def _local_file(store: ArtifactStore, digest: str):
    return store._backend.root / store.key(digest)


@pytest.mark.parametrize("damage", ["flip", "truncate", "append", "empty"])
def test_damaged_artifact_is_refused(tmp_path, damage):
    store = ArtifactStore(str(tmp_path / "store"))
    ref = store.put_tensors({"w": torch.ones(64)}, metadata={"m": 1})
    path = _local_file(store, ref.sha256)
    assert not os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)  # read-only on disk
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "append":
        data += b"x"
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="corrupted or truncated"):
        store.load_tensors(ref.sha256)
    with pytest.raises(IntegrityError):
        store.verify(ref.sha256)
    # Storing the same content again repairs a damaged copy of a different size.
    if damage != "flip":
        assert store.put_tensors({"w": torch.ones(64)}, metadata={"m": 1}) == ref
        assert store.load_tensors(ref.sha256)[1] == {"m": 1}


def test_damaged_s3_object_is_refused(s3_store):
    ref = s3_store.put_bytes(b"weights" * 100)
    s3_store._backend.fs.pipe_file(s3_store._backend._path(s3_store.key(ref.sha256)), b"weights" * 50)
    with pytest.raises(IntegrityError, match="corrupted or truncated"):
        s3_store.get_bytes(ref.sha256)


def test_bad_digest_and_non_safetensors(any_store):
    with pytest.raises(IntegrityError, match="not a sha256"):
        any_store.get_bytes("../../etc/passwd")
    ref = any_store.put_bytes(b"just bytes")
    with pytest.raises(IntegrityError, match="not a safetensors"):
        any_store.load_tensors(ref.sha256)


def test_put_file_streams(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    src = tmp_path / "adapter.safetensors"
    src.write_bytes(os.urandom(3 << 20))
    ref = store.put_file(src)
    assert store.get_bytes(ref.sha256) == src.read_bytes()
    assert not list((tmp_path / "store" / "tmp").iterdir())  # no temp file left behind


def test_stale_temp_files_are_cleaned(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    tmp_dir = tmp_path / "store" / "tmp"
    tmp_dir.mkdir(parents=True)
    (tmp_dir / "dead.part").write_bytes(b"half a write")
    assert [a for a in store.iter_artifacts()] == []  # never visible as an artifact
    assert store.remove_stale_temp_files(older_than=datetime.now(timezone.utc) - timedelta(hours=1)) == 0
    assert store.remove_stale_temp_files(older_than=datetime.now(timezone.utc) + timedelta(seconds=1)) == 1


def test_store_from_settings(tmp_path, s3_server):
    local = ArtifactStore.from_settings(Settings(home=tmp_path / "home"))
    assert local.is_local and local.url.endswith("artifacts")
    options = ('{"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": "%s", '
               '"region_name": "us-west-2"}}' % s3_server)
    settings = Settings(home=tmp_path / "home", artifact_url="s3://from-settings/a", artifact_options=options)
    import s3fs

    s3fs.S3FileSystem(**settings.resolved_artifact_options).mkdir("from-settings")
    store = ArtifactStore.from_settings(settings)
    assert not store.is_local
    assert store.get_bytes(store.put_bytes(b"abc").sha256) == b"abc"
