"""Per-row decoding control for a batch of independent requests.

Hugging Face `generate` takes one generation config per batch, but a batch here mixes
learners with their own temperature, top-p, seed and length. `RowController` is both the
logits processor and the stopping criterion of such a batch:

- it applies each row's repetition penalty, temperature and top-p, samples the row's token
  with the row's own `torch.Generator`, and hands `generate` a one-hot score so that greedy
  selection returns exactly that token. A request's output thus depends on its own seed only,
  never on which other requests share its batch;
- it stops each row at its own `max_new_tokens`, or as soon as its request is cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import LogitsProcessor, StoppingCriteria

from aivo.tutor.options import GenerationParams
from aivo.tutor.streams import CancelFlag


def apply_repetition_penalty(scores: torch.Tensor, input_ids: torch.Tensor,
                             penalties: torch.Tensor) -> torch.Tensor:
    """CTRL-style penalty: seen tokens' positive logits divided, negative ones multiplied.

    scores (B, V), input_ids (B, T), penalties (B,). Rows with penalty 1 are unchanged.
    """
    seen = torch.gather(scores, 1, input_ids)  # (B, T)
    p = penalties[:, None]
    seen = torch.where(seen > 0, seen / p, seen * p)
    return scores.scatter(1, input_ids, seen)


NUCLEUS_PROBE = 64


def top_p_mask(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of tokens whose probability reaches top_p.

    probs (B, V) rows summing to 1, top_p (B,). Returns a bool mask (B, V) of kept tokens;
    the most likely token is always kept. The nucleus is usually small, so the `NUCLEUS_PROBE`
    largest tokens are tried first; the full sort runs only when they do not reach top_p.
    """
    k = min(NUCLEUS_PROBE, probs.shape[-1])
    top_probs, top_ids = probs.topk(k, dim=-1)  # sorted, descending
    if k == probs.shape[-1] or bool((top_probs.sum(dim=-1) >= top_p).all()):
        sorted_probs, order = top_probs, top_ids
    else:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass strictly before each token
    keep_sorted = before < top_p[:, None]
    keep_sorted[:, 0] = True
    return torch.zeros(probs.shape, dtype=torch.bool, device=probs.device).scatter(1, order, keep_sorted)


def sample_from_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Token ids drawn from unnormalised probs (B, V) with one uniform in [0, 1) per row (B,)."""
    cdf = probs.cumsum(dim=-1)
    targets = uniforms[:, None] * cdf[:, -1:]
    return torch.searchsorted(cdf, targets, right=True).clamp(max=probs.shape[-1] - 1).flatten()


@dataclass
class RowSpec:
    params: GenerationParams
    generator: torch.Generator
    max_new_tokens: int
    cancelled: CancelFlag


class RowController(LogitsProcessor):
    """The batch's logits processor; `stopping_criterion()` gives its per-row stop rule."""

    def __init__(self, rows: Sequence[RowSpec], *, prompt_width: int):
        self.rows = list(rows)
        self.prompt_width = prompt_width  # prompts are left-padded to this width
        self.temperature = torch.tensor([r.params.temperature for r in rows])
        self.top_p = torch.tensor([r.params.top_p for r in rows])
        self.penalty = torch.tensor([r.params.repetition_penalty for r in rows])

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float()  # (B, V)
        if bool((self.penalty != 1).any()):
            scores = apply_repetition_penalty(scores, input_ids, self.penalty.to(scores.device))
        chosen = torch.empty(len(self.rows), dtype=torch.long)
        greedy = self.temperature <= 0
        if bool(greedy.any()):
            chosen[greedy] = scores[greedy.to(scores.device)].argmax(dim=-1).cpu()
        sampled = (~greedy).nonzero().flatten().tolist()
        if sampled:
            idx = torch.tensor(sampled, device=scores.device)
            temps = self.temperature[sampled].to(scores.device)[:, None]
            probs = torch.softmax(scores[idx] / temps, dim=-1)
            top_p = self.top_p[sampled]
            if bool((top_p < 1).any()):
                probs = probs * top_p_mask(probs, top_p.to(scores.device))
            # Inverse-CDF sampling: one uniform per row from the row's own generator, then
            # one vectorised search for all rows (cheaper than a multinomial call per row).
            uniforms = torch.stack([torch.rand((), generator=self.rows[row].generator) for row in sampled])
            chosen[sampled] = sample_from_cdf(probs.cpu(), uniforms)
        one_hot = torch.full_like(scores, float("-inf"))
        return one_hot.scatter(1, chosen.to(scores.device)[:, None], 0.0)

    def rows_done(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B,) bool: the row reached its own max_new_tokens or was cancelled."""
        produced = input_ids.shape[1] - self.prompt_width
        done = [produced >= r.max_new_tokens or r.cancelled.is_set() for r in self.rows]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def stopping_criterion(self) -> StoppingCriteria:
        return _RowStop(self)


class _RowStop(StoppingCriteria):
    def __init__(self, controller: RowController):
        self.controller = controller

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.controller.rows_done(input_ids)
