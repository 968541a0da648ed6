"""`aivo tutor init-tiny`: a tiny Llama-style tutor model built entirely on this machine.

Nothing can be downloaded here, so tests and demos use a model built from scratch:
1. a byte-level BPE tokenizer trained (tokenizers library) on the bundled K-12 corpus
   (aivo/tutor/data/corpus.jsonl), with chat special tokens and a chat template;
2. a small `LlamaConfig` (a few hundred thousand parameters);
3. optionally a brief training run on the corpus, formatted as tutor chats, so that the
   model answers with corpus-like explanations instead of noise.

It is a plumbing model: it exercises tokenization, chat templates, generation, streaming,
LoRA adapters and batching. It does not explain anything it has not memorised; real
explanations need a real model (see docs/tutor.md, AIVO_BRAIN_MODEL).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from aivo.errors import ConflictError, DataError
from aivo.tutor.offline import configure_offline
from aivo.tutor.accommodations import shape_response
from aivo.tutor.prompting import StudentContext, build_messages
from aivo.utils import durable_folder

log = logging.getLogger(__name__)

MARKER_FILE = "aivo_model.json"
TINY_KIND = "aivo-tiny"
SPECIAL_TOKENS = ("<pad>", "<s>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>")
# Role markers, then the content, then <|end|> (the EOS). One template for every role.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True)
class TinyModelSpec:
    vocab_size: int = 1024
    hidden_size: int = 96  # 96 x 2 layers memorises the corpus chats in ~250 steps (~1 min of one CPU core)
    intermediate_size: int = 264
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2  # grouped-query attention, as in current Llama models
    max_position_embeddings: int = 1024
    train_steps: int = 250  # 0 = random weights
    train_batch_size: int = 16
    train_seq_len: int = 256  # the longest corpus chat is ~225 tokens
    learning_rate: float = 5e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise DataError("hidden_size must divide by num_heads, and num_heads by num_kv_heads")
        if self.vocab_size < 300:
            raise DataError("vocab_size must be at least 300 (256 bytes + specials + merges)")
        if self.train_steps < 0 or self.train_batch_size < 1 or self.train_seq_len < 32:
            raise DataError("train_steps >= 0, train_batch_size >= 1 and train_seq_len >= 32 are required")


@dataclass(frozen=True)
class TinyModelInfo:
    path: Path
    parameters: int
    vocab_size: int
    train_steps: int
    first_loss: float | None
    final_loss: float | None
    seconds: float
    weights_sha256: str


def load_corpus() -> list[dict]:
    """The bundled K-12 explanations: dicts with subject, grade, question, explanation."""
    text = resources.files("aivo.tutor").joinpath("data/corpus.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


ROTATING_ACCOMMODATIONS = (("adhd",), ("dyslexia",), ("autism",), ("anxiety",))


def corpus_chats(*, seed: int = 0) -> list[list[dict[str, str]]]:
    """The corpus as tutor chats, with the system prompts the service writes.

    Each entry appears three times: with its grade and subject; with its grade only (what
    `aivo tutor generate "..."` sends); and with its grade and one accommodation (rotating
    over the entries; the answer shaped to match). A model this small answers well only
    for contexts it has seen, so these are the common ones. `seed` is unused (the variants
    are fixed) and kept for a future sampled scheme.
    """
    chats = []
    for i, entry in enumerate(load_corpus()):
        grade = int(entry["grade"])
        for context in (StudentContext(grade=grade, subject=entry["subject"]), StudentContext(grade=grade),
                        StudentContext(grade=grade,
                                       accommodations=ROTATING_ACCOMMODATIONS[i % len(ROTATING_ACCOMMODATIONS)])):
            messages = build_messages(context=context, prompt=entry["question"])
            messages.append({"role": "assistant", "content": shape_response(entry["explanation"],
                                                                             context.accommodations)})
            chats.append(messages)
    return chats


def train_tokenizer(texts: list[str], *, vocab_size: int):
    """A byte-level BPE tokenizer (any text encodes) with the chat template attached."""
    # start-up: transformers loads only when a model does
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="<|end|>",
                                   pad_token="<pad>", chat_template=CHAT_TEMPLATE,
                                   padding_side="left")


def _training_examples(tokenizer, chats: list[list[dict[str, str]]], seq_len: int):
    """(input_ids, labels) tensors, shape (N, seq_len); loss only on the assistant's answer."""
    # start-up: torch loads only when a model does
    import torch

    inputs, labels = [], []
    for chat in chats:
        prompt = tokenizer.apply_chat_template(chat[:-1], add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
        answer_ids = tokenizer.encode(chat[-1]["content"] + "<|end|>", add_special_tokens=False)
        ids = (prompt_ids + answer_ids)[-seq_len:]
        answer_len = min(len(answer_ids), len(ids))
        target = [-100] * (len(ids) - answer_len) + ids[len(ids) - answer_len:]
        pad = seq_len - len(ids)
        inputs.append(ids + [tokenizer.pad_token_id] * pad)
        labels.append(target + [-100] * pad)
    return torch.tensor(inputs), torch.tensor(labels)


def _train(model, tokenizer, spec: TinyModelSpec,
           progress: Callable[[int, int, float], None] | None) -> tuple[float | None, float | None]:
    # start-up: torch loads only when a model does
    import torch

    inputs, labels = _training_examples(tokenizer, corpus_chats(seed=spec.seed), spec.train_seq_len)
    attention = (inputs != tokenizer.pad_token_id).long()
    generator = torch.Generator().manual_seed(spec.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01)
    warmup = max(1, spec.train_steps // 10)

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to 10%
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, spec.train_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    model.train()
    first = last = None
    for step in range(spec.train_steps):
        rows = torch.randint(0, inputs.shape[0], (spec.train_batch_size,), generator=generator)
        width = int(attention[rows].sum(dim=1).max())  # right-padded: cut the all-pad tail
        out = model(input_ids=inputs[rows, :width], attention_mask=attention[rows, :width],
                    labels=labels[rows, :width])
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        last = float(out.loss.detach())
        first = last if first is None else first
        if progress is not None:
            progress(step + 1, spec.train_steps, last)
    model.eval()
    return first, last


def build_tiny_model(*, output_dir: Path, spec: TinyModelSpec = TinyModelSpec(), force: bool = False,
                     progress: Callable[[int, int, float], None] | None = None) -> TinyModelInfo:
    """Build (and briefly train) the tiny tutor model into `output_dir`, atomically."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not force:
        raise ConflictError(f"{output_dir} already exists; pass --force to rebuild it")
    # start-up: transformers loads only when a model does
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    configure_offline()
    started = time.perf_counter()
    chats = corpus_chats(seed=spec.seed)
    texts = [m["content"] for chat in chats for m in chat]
    tokenizer = train_tokenizer(sorted(set(texts)), vocab_size=spec.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = LlamaForCausalLM(config)
        first, last = _train(model, tokenizer, spec, progress) if spec.train_steps else (None, None)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id

    with durable_folder(output_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        weights = staging / "model.safetensors"
        weights_sha = hashlib.sha256(weights.read_bytes()).hexdigest()
        marker = {"kind": TINY_KIND, "spec": asdict(spec), "weights_sha256": weights_sha,
                  "first_loss": first, "final_loss": last,
                  "note": "Plumbing model for tests and demos; point AIVO_BRAIN_MODEL at a real model "
                          "for real explanations."}
        (staging / MARKER_FILE).write_text(json.dumps(marker, indent=2))
    seconds = time.perf_counter() - started
    parameters = sum(p.numel() for p in model.parameters())
    log.info("built tiny tutor model at %s: %d parameters, loss %s -> %s in %.1fs",
             output_dir, parameters, first, last, seconds)
    return TinyModelInfo(path=output_dir, parameters=parameters, vocab_size=len(tokenizer),
                         train_steps=spec.train_steps, first_loss=first, final_loss=last,
                         seconds=round(seconds, 2), weights_sha256=weights_sha)
