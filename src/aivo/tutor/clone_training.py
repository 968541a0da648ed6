"""Cloning a learner's tutor: a LoRA adapter fine-tuned on that learner's own data.

The learner's data becomes tutor chats with the learner's own system prompt:
- each preferred explanation: the prompt, answered by the explanation the learner liked;
- each baseline answer that has a reference answer or explanation: the question answered by
  that explanation, and the learner's own answer answered by a correction or a confirmation.
Answers are shaped by the learner's accommodations, so the adapter also learns the layout
(numbered steps for ADHD, short sentences for dyslexia, ...).

Training touches only the LoRA weights (loss on the answer tokens only) and returns them;
the base model is given back unchanged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aivo.errors import DataError
from aivo.tutor.accommodations import shape_response
from aivo.tutor.engine import render_chat
from aivo.tutor.options import CloneTrainingConfig
from aivo.tutor.prompting import StudentContext, build_messages

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]  # (fraction done 0..1, message)


@dataclass(frozen=True)
class BaselineAnswer:
    question: str
    response: str
    correct: bool | None = None
    score: float | None = None  # 0-100
    reference_answer: str | None = None
    explanation: str | None = None

    @property
    def is_correct(self) -> bool | None:
        if self.correct is not None:
            return self.correct
        return None if self.score is None else self.score >= 70


@dataclass(frozen=True)
class PreferredExplanation:
    prompt: str
    explanation: str


@dataclass(frozen=True)
class TrainedAdapter:
    tensors: dict  # LoRA weights (peft state-dict names), on CPU
    steps: int
    samples: int
    first_loss: float | None
    final_loss: float | None
    seconds: float


def build_clone_chats(*, context: StudentContext, baseline: Sequence[BaselineAnswer],
                      preferred: Sequence[PreferredExplanation]) -> list[list[dict[str, str]]]:
    """Training chats (system, user, assistant) from the learner's data."""
    chats: list[list[dict[str, str]]] = []

    def add(prompt: str, answer: str) -> None:
        messages = build_messages(context=context, prompt=prompt.strip())
        messages.append({"role": "assistant", "content": shape_response(answer.strip(), context.accommodations)})
        chats.append(messages)

    for item in preferred:
        if item.prompt.strip() and item.explanation.strip():
            add(item.prompt, item.explanation)
    for item in baseline:
        teaching = (item.explanation or item.reference_answer or "").strip()
        if not teaching or not item.question.strip():
            continue
        add(item.question, teaching)
        if item.response.strip():
            verdict = item.is_correct
            if verdict is True:
                reply = f"Yes, that is right. {teaching}"
            elif verdict is False:
                reply = f"Not quite yet, and that is okay. {teaching}"
            else:
                reply = teaching
            add(f"{item.question.strip()}\nMy answer: {item.response.strip()}", reply)
    if not chats:
        raise DataError("nothing to fine-tune on: give preferred explanations, or baseline responses with a "
                        "reference answer or an explanation")
    return chats


def tokenize_chats(tokenizer, chats: Sequence[list[dict[str, str]]], *, max_len: int):
    """(input_ids, labels) lists; labels are -100 except on the answer and its end token."""
    eos = tokenizer.eos_token or ""
    examples = []
    for chat in chats:
        prompt_ids = render_chat(tokenizer, chat[:-1])
        answer_ids = tokenizer.encode(chat[-1]["content"] + eos, add_special_tokens=False)
        ids = (prompt_ids + answer_ids)[-max_len:]  # keep the answer; cut the oldest context
        answer_len = min(len(answer_ids), len(ids))
        labels = [-100] * (len(ids) - answer_len) + ids[len(ids) - answer_len:]
        examples.append((ids, labels))
    return examples


def train_lora(*, base_model, tokenizer, chats: Sequence[list[dict[str, str]]], config: CloneTrainingConfig,
               progress: Progress | None = None) -> TrainedAdapter:
    """Fine-tune a fresh LoRA adapter on `chats`; `base_model` is restored before returning."""
    # start-up: PEFT loads only when a model does
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    started = time.perf_counter()
    examples = tokenize_chats(tokenizer, chats, max_len=config.max_seq_len)
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    lora = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=list(config.lora.target_modules), task_type="CAUSAL_LM")
    device = next(base_model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # LoRA A initialisation and dropout masks
        try:
            model = get_peft_model(base_model, lora, adapter_name="clone")
        except ValueError as exc:
            raise DataError(f"LoRA target modules {list(config.lora.target_modules)} do not fit this "
                            f"model: {exc}") from exc
        try:
            trainable = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
            generator = torch.Generator().manual_seed(config.seed)
            model.train()
            first = last = None
            step = 0
            for epoch in range(config.epochs):
                order = torch.randperm(len(examples), generator=generator).tolist()
                for start in range(0, len(order), config.batch_size):
                    batch = [examples[i] for i in order[start:start + config.batch_size]]
                    width = max(len(ids) for ids, _ in batch)
                    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch], device=device)
                    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch], device=device)
                    attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch],
                                             device=device)
                    loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                    optimizer.step()
                    step += 1
                    last = float(loss.detach())
                    first = last if first is None else first
                    if progress is not None:
                        progress(step / total_steps, f"epoch {epoch + 1}/{config.epochs}, loss {last:.3f}")
            model.eval()
            tensors = {k: v.detach().to("cpu").clone()
                       for k, v in get_peft_model_state_dict(model, adapter_name="clone").items()}
        finally:
            model.unload()  # removes the LoRA layers: the base model is as it was
    seconds = time.perf_counter() - started
    log.info("LoRA adapter trained: %d steps on %d examples, loss %s -> %s in %.1fs",
             total_steps, len(examples), first, last, seconds)
    return TrainedAdapter(tensors=tensors, steps=total_steps, samples=len(examples), first_loss=first,
                          final_loss=last, seconds=round(seconds, 3))
