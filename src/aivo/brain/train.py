"""Training of the Main Brain: one front door, `train_main_brain`.

Adam on the shared part (the personal part stays at zero: it belongs to per-learner clones),
early stopping on validation AUC, seeded determinism (same seed and thread count -> same weights).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from aivo.brain.batching import Batch, EncodedLog, encode_log, iterate_batches, random_shifts
from aivo.brain.bundle import TrainedBrain, build_model
from aivo.brain.config import BrainConfig
from aivo.brain.labels import derive_label_tables
from aivo.brain.model import BrainOutput, MainBrain
from aivo.brain.vocab import PAD, BrainVocab
from aivo.data.metrics import BinaryMetrics, binary_metrics
from aivo.data.schema import InteractionLog
from aivo.errors import DataError

log = logging.getLogger(__name__)


class TrainingStopped(Exception):
    """`train_main_brain` was asked to stop (its `should_stop` callback returned True)."""


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    validation_auc: float | None
    validation_log_loss: float
    seconds: float


@dataclass
class TrainResult:
    brain: TrainedBrain
    history: list[EpochRecord]
    best_epoch: int  # 1-based epoch whose weights were kept
    validation: BinaryMetrics  # of the kept weights
    seconds: float
    stopped_early: bool
    info: dict = field(default_factory=dict)

    @property
    def model(self) -> MainBrain:
        return self.brain.model


def brain_loss(output: BrainOutput, batch: Batch, config: BrainConfig) -> torch.Tensor:
    """Mean BCE of correctness + weighted cross-entropies of the difficulty and content heads."""
    target_mask = batch.valid if config.train_on_first_attempt else batch.scored
    bce = F.binary_cross_entropy_with_logits(output.correct_logit[target_mask], batch.correct[target_mask])
    total = bce
    if config.difficulty_loss_weight > 0:
        total = total + config.difficulty_loss_weight * F.cross_entropy(
            output.difficulty_logits[batch.valid], batch.difficulty[batch.valid])
    if config.content_loss_weight > 0:
        content_target = batch.skills[..., 0]
        known = batch.valid & (content_target != PAD)
        if known.any():
            total = total + config.content_loss_weight * F.cross_entropy(
                output.content_logits[known], content_target[known])
    return total


def ema_with_warmup(decay: float):
    """The `multi_avg_fn` of an exponential moving average of the weights whose decay ramps up
    with the number n of averaged steps, min(decay, (1 + n) / (10 + n)), as TensorFlow's
    ExponentialMovingAverage does with num_updates. Without the ramp a small data set's average
    holds on to its first steps' weights (0.99 ** 100 = 0.37 after 100 steps, which is 10 epochs
    of STATICS at batch 64); with it the average spans about the last tenth of the steps until
    it reaches `decay`."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return update


def init_item_bias(model: MainBrain, tables) -> None:
    """Start each item's bias at the log-odds of its smoothed training correct rate (an IRT warm
    start): without it, small data sets spend many epochs learning item difficulty alone."""
    correct_rate = 1.0 - np.clip(np.asarray(tables.item_error_rate, dtype=np.float64), 1e-3, 1 - 1e-3)
    with torch.no_grad():
        model.head.item_bias.weight[:, 0] = torch.from_numpy(np.log(correct_rate / (1 - correct_rate))).float()
        model.head.item_bias.weight[PAD] = 0.0


def forward_batch(model: MainBrain, batch: Batch) -> BrainOutput:
    return model(item=batch.item, skills=batch.skills, item_type=batch.item_type, correct=batch.correct,
                 features=batch.features)


@torch.no_grad()
def scored_probabilities(model: MainBrain, encoded: EncodedLog, *, batch_size: int = 256) -> np.ndarray:
    """P(correct) per entry of `encoded`; NaN where an entry is not scored (the first attempt of a
    chunk, or a context window's rows that only serve as context)."""
    was_training = model.training
    model.eval()
    out = np.full(len(encoded.correct), np.nan, dtype=np.float64)
    for batch in iterate_batches(encoded, batch_size=batch_size):
        prob = torch.sigmoid(forward_batch(model, batch).correct_logit)
        out[batch.row[batch.scored].numpy()] = prob[batch.scored].double().numpy()
    model.train(was_training)
    return out


def _validation_metrics(model: MainBrain, encoded: EncodedLog) -> BinaryMetrics:
    prob = scored_probabilities(model, encoded)
    keep = ~np.isnan(prob)
    return binary_metrics(encoded.correct[keep], prob[keep])


def _check_log(name: str, data: InteractionLog, config: BrainConfig) -> None:
    if data.num_interactions == 0:
        raise DataError(f"the {name} log is empty")
    lengths = data.frame.groupby("learner_id", sort=False).size()
    if int((lengths.clip(upper=config.max_seq_len) - 1).sum()) <= 0:
        raise DataError(f"the {name} log has no learner with two or more attempts: nothing to score")


def stopping_patience(config: BrainConfig, *, steps_per_epoch: int) -> int:
    """Epochs without a validation improvement before early stopping: `patience`, or as many
    epochs as `patience_steps` optimizer steps take when that is more (small data sets)."""
    if config.patience_steps <= 0 or steps_per_epoch <= 0:
        return config.patience
    return max(config.patience, -(-config.patience_steps // steps_per_epoch))


def train_main_brain(*, train: InteractionLog, validation: InteractionLog, config: BrainConfig, seed: int,
                     progress: bool = False, time_budget_s: float | None = None,
                     should_stop: Callable[[], bool] | None = None,
                     on_epoch: Callable[[EpochRecord], None] | None = None,
                     monitor: Callable[[EpochRecord, TrainedBrain], None] | None = None) -> TrainResult:
    """Train a Main Brain on `train`, early-stopping on the AUC of `validation` (other learners).

    `time_budget_s` stops after the epoch during which the budget ran out (best weights kept).
    `should_stop` is polled after every batch (keep it cheap): when it returns True, training
    raises `TrainingStopped` (cooperative cancellation of trainer jobs). `on_epoch` sees every
    epoch's record (a hyperparameter search prunes a hopeless trial by raising from it). `monitor`
    sees it too, with the weights just validated (those early stopping would keep; benchmarks score
    other learners with them); it must not change them."""
    _check_log("training", train, config)
    _check_log("validation", validation, config)
    started = time.perf_counter()
    vocab = BrainVocab.build(train)
    tables = derive_label_tables(train, vocab, num_levels=config.num_difficulty_levels,
                                 prior_count=config.difficulty_prior_count)
    train_encoded = encode_log(train, vocab=vocab, tables=tables, config=config)
    # validated as evaluated and served: every attempt from the context aivo.brain.context gives it
    val_encoded = encode_log(validation, vocab=vocab, tables=tables, config=config, layout="context")
    train_learners = train.frame["learner_id"].to_numpy(dtype=object)
    if len(np.unique(val_encoded.correct)) < 2:
        raise DataError("the validation log has only one kind of answer: AUC is undefined")
    log.info("training Main Brain: %d train / %d validation interactions, %d / %d chunks, %d items, %d skills",
             len(train_encoded.correct), len(val_encoded.correct), train_encoded.num_chunks,
             val_encoded.num_chunks, len(vocab.items) - 2, len(vocab.skills) - 2)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(config, vocab)
        if config.init_item_bias:
            init_item_bias(model, tables)
        shared = [p for n, p in model.named_parameters() if not n.startswith("personal.")]
        for p in model.personal.parameters():
            p.requires_grad_(False)
        optimizer = torch.optim.Adam(shared, lr=config.learning_rate, weight_decay=config.weight_decay)
        # Validate (and keep) an exponential moving average of the weights when asked: a cheap
        # ensemble over the last steps, smoother than the raw weights on small data.
        averaged = (AveragedModel(model, multi_avg_fn=ema_with_warmup(config.weight_average_decay))
                    if config.weight_average_decay > 0 else None)
        evaluated = averaged.module if averaged is not None else model
        generator = np.random.default_rng(seed)
        history: list[EpochRecord] = []
        best_auc, best_epoch, best_state, stale = -np.inf, 0, None, 0
        stopped_early = False
        bar = _progress(progress, config.max_epochs)
        try:
            for epoch in range(1, config.max_epochs + 1):
                epoch_started = time.perf_counter()
                model.train()
                losses = []
                if config.random_chunk_offsets and epoch > 1:
                    shifts = random_shifts(train_learners, config.max_seq_len, generator)
                    train_encoded = encode_log(train, vocab=vocab, tables=tables, config=config, shifts=shifts)
                for batch in iterate_batches(train_encoded, batch_size=config.batch_size, generator=generator):
                    optimizer.zero_grad(set_to_none=True)
                    loss = brain_loss(forward_batch(model, batch), batch, config)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(shared, config.grad_clip_norm)
                    optimizer.step()
                    if should_stop is not None and should_stop():
                        raise TrainingStopped(f"training stopped on request during epoch {epoch}")
                    if averaged is not None:
                        averaged.update_parameters(model)
                    losses.append(loss.item())
                metrics = _validation_metrics(evaluated, val_encoded)
                auc = metrics.auc if metrics.auc is not None else -np.inf
                record = EpochRecord(epoch, float(np.mean(losses)), metrics.auc, metrics.log_loss,
                                     time.perf_counter() - epoch_started)
                history.append(record)
                if on_epoch is not None:
                    on_epoch(record)
                if monitor is not None:
                    monitor(record, TrainedBrain(model=evaluated, vocab=vocab, tables=tables, info={}))
                log.info("epoch %d: train loss %.4f, validation AUC %.4f, %.1fs", epoch, record.train_loss,
                         auc, record.seconds)
                if bar is not None:
                    bar.set_description(f"epoch {epoch} val AUC {auc:.4f}")
                    bar.update(1)
                if auc > best_auc:
                    best_auc, best_epoch, stale = auc, epoch, 0
                    best_state = copy.deepcopy(evaluated.state_dict())
                else:
                    stale += 1
                    if stale >= stopping_patience(config, steps_per_epoch=len(losses)):
                        stopped_early = True
                        break
                if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
                    log.warning("time budget of %.0fs spent after epoch %d", time_budget_s, epoch)
                    stopped_early = True
                    break
        finally:
            if bar is not None:
                bar.close()
        model.load_state_dict(best_state)
        for p in model.personal.parameters():
            p.requires_grad_(True)
    model.eval()
    validation_metrics = _validation_metrics(model, val_encoded)
    seconds = time.perf_counter() - started
    info = {"seed": seed, "train_data_hash": train.data_hash(), "validation_data_hash": validation.data_hash(),
            "best_epoch": best_epoch, "epochs_run": len(history), "train_seconds": round(seconds, 2),
            "validation_metrics": validation_metrics.as_dict(),
            "train_interactions": train.num_interactions, "validation_interactions": validation.num_interactions}
    brain = TrainedBrain(model=model, vocab=vocab, tables=tables, info=info)
    return TrainResult(brain=brain, history=history, best_epoch=best_epoch, validation=validation_metrics,
                       seconds=seconds, stopped_early=stopped_early, info=info)


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    return tqdm(total=total, desc="training", unit="epoch", leave=False)
