"""The batch worker: one thread owns the model and decodes waiting requests together.

Requests (a prompt, the learner's adapter or none, generation parameters) queue up. The
worker takes the first, waits up to `window_ms` for more (at most `max_batch_size`), makes
the batch's adapters resident in the LRU cache, and runs one `generate` call:

- rows for different learners use PEFT's mixed-adapter batches (`adapter_names=`, one name
  per row: the row's own learner's adapter, or "__base__");
- a batch of one learner (or of base rows only) takes PEFT's plain single-adapter path;
- each row keeps its own sampling parameters, seed and length (sampling.RowController),
  and its tokens stream to its own `TokenStream` as they are produced.

Owning the model in one thread also makes adapter loading and eviction safe.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from aivo.errors import DataError
from aivo.tutor.adapter_store import AdapterRef
from aivo.tutor.adapters import AdapterCache
from aivo.tutor.engine import TutorEngine
from aivo.tutor.options import BatchingConfig, GenerationParams
from aivo.tutor.streams import Failed, Finished, TokenEvent, TokenStream

log = logging.getLogger(__name__)

BASE_ROW = "__base__"  # PEFT's name for "no adapter" in a mixed batch


@dataclass
class GenerationJob:
    prompt_ids: list[int]
    adapter: AdapterRef | None
    params: GenerationParams  # seed resolved to an int
    stream: TokenStream = field(default_factory=TokenStream)


@dataclass
class BatchStats:
    batches: int = 0
    rows: int = 0
    largest_batch: int = 0
    mixed_batches: int = 0

    @property
    def mean_batch_size(self) -> float:
        return self.rows / self.batches if self.batches else 0.0


class _Row:
    """One request's progress inside a running batch."""

    def __init__(self, job: GenerationJob, max_new_tokens: int):
        self.job = job
        self.max_new_tokens = max_new_tokens
        self.ids: list[int] = []
        self.finished = False
        # Incremental detokenization: ids[prefix:read] is a short window of already emitted
        # tokens, re-decoded with the new ones so merges across token boundaries come out right.
        self.prefix = 0
        self.read = 0


class _RowStreamer:
    """A `generate` streamer that splits each step's (B,) tokens into the rows' streams."""

    def __init__(self, rows: list[_Row], engine: TutorEngine, eos_ids: set[int], batch_size: int,
                 adapter_names: list[str] | None = None):
        self.rows = rows
        self.adapter_names = adapter_names
        self.tokenizer = engine.tokenizer
        self.lock = engine.lock
        self.eos_ids = eos_ids
        self.batch_size = batch_size
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate first hands over the (B, T) prompt
            self._prompt_seen = True
            return
        for row, token in zip(self.rows, value.reshape(-1).tolist()):
            if row.finished:
                continue
            if token in self.eos_ids:
                self._finish(row, "stop")
                continue
            row.ids.append(token)
            row.job.stream.push(TokenEvent(index=len(row.ids) - 1, token_id=token, text=self._new_text(row)))
            if len(row.ids) >= row.max_new_tokens:
                self._finish(row, "length")
            elif row.job.stream.cancelled:
                self._finish(row, "cancelled")

    def end(self) -> None:
        for row in self.rows:
            if not row.finished:
                self._finish(row, "cancelled" if row.job.stream.cancelled else "length")

    def _new_text(self, row: _Row) -> str:
        """The text the row's newest token completes ("" while a character is incomplete)."""
        with self.lock:
            before = self.tokenizer.decode(row.ids[row.prefix:row.read], skip_special_tokens=True)
            after = self.tokenizer.decode(row.ids[row.prefix:], skip_special_tokens=True)
        if after.endswith("\ufffd") or len(after) <= len(before):
            return ""  # hold back half a multi-byte character (or a token that decodes to nothing)
        row.prefix, row.read = row.read, len(row.ids)
        return after[len(before):]

    def _decode(self, ids: list[int]) -> str:
        with self.lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _finish(self, row: _Row, reason: str) -> None:
        row.finished = True
        if self.adapter_names is not None:
            # PEFT reads this list at every step of a mixed batch: a finished row (whose further
            # tokens are discarded) no longer needs its LoRA computed. Outputs do not depend on it.
            self.adapter_names[self.rows.index(row)] = BASE_ROW
        text = self._decode(row.ids)
        row.job.stream.push(Finished(
            finish_reason=reason, prompt_tokens=len(row.job.prompt_ids), completion_tokens=len(row.ids),
            text=text, adapter=row.job.adapter.learner_id if row.job.adapter else None,
            batch_size=self.batch_size))


class BatchGenerator:
    def __init__(self, *, engine: TutorEngine, adapters: AdapterCache, config: BatchingConfig):
        self.engine = engine
        self.adapters = adapters
        self.config = config
        self.stats = BatchStats()
        self._queue: queue.Queue[GenerationJob | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="aivo-tutor-batcher", daemon=True)
        self._started = False
        self._closed = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the tutor batch worker is closed")
            if not self._started:
                self._thread.start()
                self._started = True

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop; later submissions raise."""
        with self._lock:
            self._closed = True
            if self._started:
                self._queue.put(None)
                self._thread.join(timeout)
                self._started = False

    def call_in_worker(self, fn, timeout: float = 60.0):
        """Run `fn()` on the worker thread (the only one allowed to touch the model)."""
        done = threading.Event()
        box: dict = {}

        def task() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed back to the caller
                box["error"] = exc
            finally:
                done.set()

        self.start()
        self._queue.put(task)  # type: ignore[arg-type]
        if not done.wait(timeout):
            raise TimeoutError("the tutor worker did not answer in time")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def submit(self, *, prompt_ids: list[int], adapter: AdapterRef | None,
               params: GenerationParams) -> TokenStream:
        if not prompt_ids:
            raise DataError("the prompt is empty")
        room = self.engine.max_context - len(prompt_ids)
        if room < 1:
            raise DataError(f"the prompt has {len(prompt_ids)} tokens; this model reads at most "
                            f"{self.engine.max_context}. Shorten the prompt or the conversation")
        if params.seed is None:
            raise ValueError("submit() needs a resolved seed")
        params = params.override(max_new_tokens=min(params.max_new_tokens, room))
        job = GenerationJob(prompt_ids=list(prompt_ids), adapter=adapter, params=params)
        self.start()
        self._queue.put(job)
        return job.stream

    # --- worker thread -------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._fail_pending("the tutor is shutting down")

    def _fail_pending(self, message: str) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, GenerationJob):
                item.stream.push(Failed(message))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if callable(item):
                item()
                continue
            batch, stop = [item], False
            deadline = time.monotonic() + self.config.window_ms / 1000
            while len(batch) < self.config.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if callable(nxt):
                    nxt()
                    continue
                batch.append(nxt)
            for group in self._split(batch):
                try:
                    self._generate(group)
                except Exception as exc:  # never let one group kill the worker: every later request would hang
                    log.exception("tutor batch failed")
                    for job in group:
                        job.stream.push(Failed(f"generation failed: {getattr(exc, 'message', exc)}", exc))
            if stop:
                return

    def _split(self, batch: list[GenerationJob]) -> list[list[GenerationJob]]:
        """Groups with at most `capacity` distinct learners each, in arrival order. A learner whose
        adapter changed between two requests (re-cloned meanwhile) starts a new group: one group
        holds one adapter per learner."""
        groups: list[list[GenerationJob]] = [[]]
        refs: dict[str, AdapterRef] = {}
        for job in batch:
            lid = job.adapter.learner_id if job.adapter else None
            new_learner = lid is not None and lid not in refs
            if (new_learner and len(refs) >= self.adapters.capacity) or (
                    lid is not None and not new_learner and refs[lid] != job.adapter):
                groups.append([])
                refs = {}
            if lid is not None:
                refs[lid] = job.adapter
            groups[-1].append(job)
        return [g for g in groups if g]

    def _generate(self, jobs: list[GenerationJob]) -> None:
        live = []
        for job in jobs:
            if job.stream.cancelled:
                job.stream.push(Finished(finish_reason="cancelled", prompt_tokens=len(job.prompt_ids),
                                         completion_tokens=0, text="", adapter=None, batch_size=0))
            else:
                live.append(job)
        if not live:
            return
        try:
            names = self.adapters.acquire([j.adapter for j in live if j.adapter is not None])
        except Exception as exc:  # one bad adapter must not sink the other learners' requests
            live = self._acquire_one_by_one(live, exc)
            if not live:
                return
            names = self.adapters.acquire([j.adapter for j in live if j.adapter is not None])
        try:
            self._decode(live, names)
        except Exception as exc:
            log.exception("tutor generation failed")
            for job in live:
                job.stream.push(Failed(f"generation failed: {exc}", exc))

    def _acquire_one_by_one(self, jobs: list[GenerationJob], first_error: Exception) -> list[GenerationJob]:
        ok = []
        for job in jobs:
            if job.adapter is None:
                ok.append(job)
                continue
            try:
                self.adapters.acquire([job.adapter])
                ok.append(job)
            except Exception as exc:
                log.warning("adapter of learner %s failed to load: %s", job.adapter.learner_id, exc)
                job.stream.push(Failed(str(getattr(exc, "message", exc)), exc))
        return ok

    def _decode(self, jobs: list[GenerationJob], names: dict[str, str]) -> None:
        # start-up: transformers loads only when a model does
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        # start-up: sampling builds on torch, which loads with the model
        from aivo.tutor.sampling import RowController, RowSpec

        engine = self.engine
        pad = engine.tokenizer.pad_token_id
        width = max(len(j.prompt_ids) for j in jobs)
        input_ids = torch.tensor([[pad] * (width - len(j.prompt_ids)) + j.prompt_ids for j in jobs])
        attention = torch.tensor([[0] * (width - len(j.prompt_ids)) + [1] * len(j.prompt_ids) for j in jobs])
        rows = [_Row(j, j.params.max_new_tokens) for j in jobs]
        controller = RowController(
            [RowSpec(params=j.params, generator=torch.Generator().manual_seed(int(j.params.seed)),
                     max_new_tokens=j.params.max_new_tokens, cancelled=j.stream.cancel_flag) for j in jobs],
            prompt_width=width)
        eos = engine.eos_token_ids
        config = GenerationConfig(max_new_tokens=max(r.max_new_tokens for r in rows), do_sample=False,
                                  num_beams=1, pad_token_id=pad, eos_token_id=eos)
        row_names = [names[j.adapter.learner_id] if j.adapter else BASE_ROW for j in jobs]
        distinct = set(row_names)
        mixed = len(distinct) > 1
        streamer = _RowStreamer(rows, engine, set(eos), len(jobs), adapter_names=row_names if mixed else None)
        kwargs = dict(input_ids=input_ids.to(engine.device), attention_mask=attention.to(engine.device),
                      generation_config=config, logits_processor=LogitsProcessorList([controller]),
                      stopping_criteria=StoppingCriteriaList([controller.stopping_criterion()]),
                      streamer=streamer)
        model = engine.model
        self.stats.batches += 1
        self.stats.rows += len(jobs)
        self.stats.largest_batch = max(self.stats.largest_batch, len(jobs))
        with torch.inference_mode():
            if distinct == {BASE_ROW}:
                with model.disable_adapter():
                    model.generate(**kwargs)
            elif len(distinct) == 1:
                model.set_adapter(row_names[0])
                model.generate(**kwargs)
            else:
                self.stats.mixed_batches += 1
                model.generate(**kwargs, adapter_names=row_names)
        streamer.end()
