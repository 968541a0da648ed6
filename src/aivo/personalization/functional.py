"""Stateless views of a Main Brain: run it with swapped-in parameters, and its loss with masks.

Local training never copies or mutates the (cached, shared) Main Brain: it keeps its own
tensors for the parameters it trains and calls the model through `torch.func.functional_call`.
`masked_brain_loss` is the Main Brain's training objective (`aivo.brain.train.brain_loss`)
written with masks instead of boolean indexing, so that it also works under `torch.func.vmap`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.func import functional_call
from torch.nn import functional as F

from aivo.brain.batching import Batch
from aivo.brain.config import BrainConfig
from aivo.brain.model import BrainOutput, MainBrain
from aivo.brain.vocab import PAD


def forward_with(model: MainBrain, params: Mapping[str, torch.Tensor], batch: Batch) -> BrainOutput:
    """The model's forward pass with `params` (name -> tensor) replacing its own parameters."""
    return functional_call(model, dict(params), args=(), kwargs=dict(
        item=batch.item, skills=batch.skills, item_type=batch.item_type, correct=batch.correct,
        features=batch.features), strict=False)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def masked_brain_loss(output: BrainOutput, batch: Batch, config: BrainConfig) -> torch.Tensor:
    """Same value as `brain_loss` (mean BCE + weighted auxiliary cross-entropies)."""
    target_mask = batch.valid if config.train_on_first_attempt else batch.scored
    bce = F.binary_cross_entropy_with_logits(output.correct_logit, batch.correct, reduction="none")
    total = _masked_mean(bce, target_mask)
    if config.difficulty_loss_weight > 0:
        logits = output.difficulty_logits
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.difficulty.reshape(-1),
                             reduction="none").reshape(batch.difficulty.shape)
        total = total + config.difficulty_loss_weight * _masked_mean(ce, batch.valid)
    if config.content_loss_weight > 0:
        target = batch.skills[..., 0]
        known = batch.valid & (target != PAD)
        logits = output.content_logits
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                             reduction="none").reshape(target.shape)
        total = total + config.content_loss_weight * _masked_mean(ce, known)
    return total


def proximal_term(params: Mapping[str, torch.Tensor], anchor: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """1/2 sum ||params - anchor||^2 over the names of `params` (FedProx's proximal term)."""
    total = None
    for name, value in params.items():
        term = (value - anchor[name]).pow(2).sum()
        total = term if total is None else total + term
    return 0.5 * total if total is not None else torch.zeros(())
