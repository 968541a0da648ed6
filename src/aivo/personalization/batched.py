"""Many learners' shared updates at once, with exactly the semantics of one-by-one training.

Each learner still trains its own copy of the aggregated parameters on its own chunks only;
`torch.func.vmap` runs the copies side by side (a leading "learner" dimension on the trained
parameters and on the data), so a group of learners costs about one batched forward/backward
per local epoch instead of one per learner. The result equals `train_local`'s shared update
for every learner whose chunks fit in one local batch (the usual case: a chunk holds up to
`max_seq_len` interactions); others must go one by one.

PyTorch's fused GRU/LSTM kernels have no vmap rule. Two ways around it:

* "staged" (used when the encoder is frozen, the default): the forward pass is split where the
  Main Brain's forward splits -- embeddings (per learner, vmapped), the encoder (shared weights:
  one fused call over every learner's chunks), heads (per learner, vmapped) -- and ordinary
  autograd differentiates through all three. About the cost of one centralized batch.
* "vmap": the whole model under `vmap(grad(...))`, its recurrent layer swapped for
  `UnrolledRNN`, a step-by-step implementation over the *same* parameter tensors. Works for any
  partition (also a trained encoder) but runs the recurrence step by step in Python.

Both are checked against one-by-one local training in the tests.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from aivo.brain.batching import Batch, EncodedLog, make_batch
from aivo.brain.bundle import TrainedBrain
from aivo.brain.model import BrainOutput
from aivo.personalization.functional import masked_brain_loss, proximal_term
from aivo.personalization.parts import ParameterPartition

_FIELDS = ("item", "skills", "item_type", "correct", "features", "difficulty", "valid", "scored")


class UnrolledRNN(nn.Module):
    """A batch-first GRU/LSTM evaluated step by step with the wrapped layer's own parameters
    (same names, so `functional_call` can swap them). Inference semantics: no inter-layer dropout."""

    def __init__(self, rnn: nn.GRU | nn.LSTM):
        super().__init__()
        if not rnn.batch_first or rnn.bidirectional or getattr(rnn, "proj_size", 0):
            raise ValueError("UnrolledRNN supports batch-first, unidirectional GRU/LSTM without projections")
        self.kind = "gru" if isinstance(rnn, nn.GRU) else "lstm"
        self.num_layers, self.hidden_size, self.bias = rnn.num_layers, rnn.hidden_size, rnn.bias
        for name, param in rnn.named_parameters():
            self.register_parameter(name, param)  # the same Parameter objects as the fused layer

    def forward(self, x: torch.Tensor):
        """x (B, T, D) -> (outputs (B, T, H), None)."""
        out = x
        for layer in range(self.num_layers):
            w_ih, w_hh = getattr(self, f"weight_ih_l{layer}"), getattr(self, f"weight_hh_l{layer}")
            b_ih = getattr(self, f"bias_ih_l{layer}") if self.bias else None
            b_hh = getattr(self, f"bias_hh_l{layer}") if self.bias else None
            gates_in = out @ w_ih.T + (b_ih if b_ih is not None else 0.0)  # (B, T, G*H)
            h = out.new_zeros(out.shape[0], self.hidden_size)
            c = out.new_zeros(out.shape[0], self.hidden_size)
            steps = []
            for t in range(out.shape[1]):
                gates_h = h @ w_hh.T + (b_hh if b_hh is not None else 0.0)
                if self.kind == "gru":
                    i_r, i_z, i_n = gates_in[:, t].chunk(3, dim=-1)
                    h_r, h_z, h_n = gates_h.chunk(3, dim=-1)
                    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
                    n = torch.tanh(i_n + r * h_n)
                    h = (1 - z) * n + z * h
                else:
                    i, f, g, o = (gates_in[:, t] + gates_h).chunk(4, dim=-1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                steps.append(h)
            out = torch.stack(steps, dim=1)
        return out, None


def vmappable_model(brain: TrainedBrain) -> nn.Module:
    """A copy of the Main Brain (sharing its parameter tensors) whose recurrent layer is unrolled."""
    model = brain.model
    memo = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    clone = copy.deepcopy(model, memo)
    clone.encoder.rnn = UnrolledRNN(model.encoder.rnn)
    clone.eval()
    return clone


@dataclass(frozen=True)
class LearnerChunks:
    """One learner's training data as chunks (rows of an `EncodedLog` of that learner only)."""

    learner_id: str
    encoded: EncodedLog


def _stack_batches(groups: Sequence[LearnerChunks], width: int, num_chunks: int) -> dict[str, torch.Tensor]:
    """(L, C, T, ...) tensors: each learner's chunks padded to C chunks of T steps (padding is
    PAD / 0 / False, exactly as `make_batch` pads)."""
    out: dict[str, np.ndarray] = {}
    for index, learner in enumerate(groups):
        batch = make_batch(learner.encoded, np.arange(learner.encoded.num_chunks))
        for name in _FIELDS:
            value = getattr(batch, name).numpy()
            if name not in out:
                out[name] = np.zeros((len(groups), num_chunks, width, *value.shape[2:]), dtype=value.dtype)
            out[name][index, :value.shape[0], :value.shape[1]] = value
    return {name: torch.from_numpy(values) for name, values in out.items()}


class _Staged(nn.Module):
    """The Main Brain's forward pass cut in three (mirrors `MainBrain.forward`; the tests check
    that the composition equals it). Parameters keep their names under `brain.`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.brain = model

    def forward(self, stage: str, fields: dict[str, torch.Tensor], state: torch.Tensor | None = None):
        m = self.brain
        if stage == "inputs":  # (C, T) -> interaction vectors (C, T, D), evidence (C, T, R) or None
            x = m.embed.interaction(fields["item"], fields["skills"], fields["item_type"], fields["correct"],
                                    fields["features"])
            evidence = (m.embed.evidence(fields["item"], fields["skills"], fields["correct"], fields["features"])
                        if m.config.evidence_dim else None)
            return x, evidence
        logit = m.correct_logit(state, fields["item"], fields["skills"], fields["item_type"], fields["features"])
        difficulty = m.head.difficulty(state)
        content = m.head.content(state) @ m.embed.skill.weight.T + m.head.content_bias
        return logit, difficulty, content


def staged_forward(model: nn.Module, trained: dict[str, torch.Tensor], data: dict[str, torch.Tensor]):
    """Forward pass of L learners at once: `trained` holds (L, ...) parameters, `data` (L, C, T, ...)
    fields. Returns BrainOutput-like (L, C, T, ...) tensors. The encoder uses its own (shared) weights."""
    staged = _Staged(model)
    params = {"brain." + name: value for name, value in trained.items()}

    def inputs(p, fields):
        return functional_call(staged, p, args=("inputs", fields), strict=False)

    def heads(p, fields, state):
        return functional_call(staged, p, args=("heads", fields, state), strict=False)

    x, evidence = vmap(inputs, in_dims=(0, 0))(params, data)  # (L, C, T, D), (L, C, T, R)
    count, chunks, steps = x.shape[:3]
    flat_evidence = None if evidence is None else evidence.reshape(count * chunks, steps, -1)
    state = model.encoder(x.reshape(count * chunks, steps, -1), flat_evidence)  # one fused call
    state = state.reshape(count, chunks, steps, -1)
    logit, difficulty, content = vmap(heads, in_dims=(0, 0, 0))(params, data, state)
    return BrainOutput(correct_logit=logit, difficulty_logits=difficulty, content_logits=content, state=state)


def shared_updates(*, brain: TrainedBrain, learners: Sequence[LearnerChunks], partition: ParameterPartition,
                   epochs: int, learning_rate: float, proximal_mu: float = 0.0, batch_size: int = 32,
                   model: nn.Module | None = None, method: str = "auto") -> dict[str, torch.Tensor]:
    """Each learner's shared update (aggregated name -> (L, ...) float32 deltas, learner order),
    i.e. `epochs` full-batch SGD steps from the main parameters on that learner's chunks only.
    method: "staged" (needs a frozen encoder), "vmap", or "auto" (staged when possible)."""
    if not learners:
        return {}
    too_many = [lc.learner_id for lc in learners if lc.encoded.num_chunks > batch_size]
    if too_many:
        raise ValueError(f"{len(too_many)} learners have more chunks than one local batch; train them one by one")
    encoder_trained = any(n.startswith("encoder.") for n in partition.aggregated)
    if method == "auto":
        method = "vmap" if encoder_trained else "staged"
    if method == "staged":
        if encoder_trained:
            raise ValueError("the staged method needs a frozen encoder")
        return _staged_updates(brain, learners, partition, epochs, learning_rate, proximal_mu)
    if method != "vmap":
        raise ValueError(f"method must be auto, staged or vmap, got {method!r}")
    model = model if model is not None else vmappable_model(brain)
    config = brain.config
    params = dict(brain.model.named_parameters())
    anchor = {n: params[n].detach() for n in partition.aggregated}
    fixed = {**{n: params[n].detach() for n in partition.frozen},
             **{n: torch.zeros_like(params[n]) for n in partition.personal}}
    width = max(int(lc.encoded.chunk_length.max()) for lc in learners)
    num_chunks = max(lc.encoded.num_chunks for lc in learners)
    data = _stack_batches(learners, width, num_chunks)

    def loss(trained: dict[str, torch.Tensor], fields: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = Batch(**fields, row=fields["item"])  # row is not used by the loss
        out = functional_call(model, {**fixed, **trained}, args=(), kwargs=dict(
            item=batch.item, skills=batch.skills, item_type=batch.item_type, correct=batch.correct,
            features=batch.features), strict=False)
        value = masked_brain_loss(out, batch, config)
        if proximal_mu > 0:
            value = value + proximal_mu * proximal_term(trained, anchor)
        return value

    step = vmap(grad(loss), in_dims=(0, 0))
    count = len(learners)
    trained = {n: anchor[n].unsqueeze(0).expand(count, *anchor[n].shape).clone() for n in partition.aggregated}
    for _ in range(epochs):
        grads = step(trained, data)
        trained = {n: trained[n] - learning_rate * grads[n] for n in trained}
    return {n: (trained[n] - anchor[n]).to(torch.float32) for n in partition.aggregated}


def _staged_updates(brain: TrainedBrain, learners: Sequence[LearnerChunks], partition: ParameterPartition,
                    epochs: int, learning_rate: float, proximal_mu: float) -> dict[str, torch.Tensor]:
    model = brain.model
    if model.training:
        model.eval()
    config = brain.config
    params = dict(model.named_parameters())
    anchor = {n: params[n].detach() for n in partition.aggregated}
    zero_personal = {n: torch.zeros_like(params[n]) for n in partition.personal}
    width = max(int(lc.encoded.chunk_length.max()) for lc in learners)
    num_chunks = max(lc.encoded.num_chunks for lc in learners)
    data = _stack_batches(learners, width, num_chunks)
    count = len(learners)
    trained = {n: anchor[n].unsqueeze(0).expand(count, *anchor[n].shape).clone().requires_grad_(True)
               for n in partition.aggregated}
    stacked_personal = {n: v.unsqueeze(0).expand(count, *v.shape) for n, v in zero_personal.items()}

    def per_learner_loss(logit, difficulty, content, state, fields):
        output = BrainOutput(correct_logit=logit, difficulty_logits=difficulty, content_logits=content, state=state)
        return masked_brain_loss(output, Batch(**fields, row=fields["item"]), config)

    for _ in range(epochs):
        out = staged_forward(model, {**trained, **stacked_personal}, data)
        losses = vmap(per_learner_loss)(out.correct_logit, out.difficulty_logits, out.content_logits, out.state,
                                        data)  # (L,) each learner's own mean loss
        total = losses.sum()
        if proximal_mu > 0:
            total = total + proximal_mu * 0.5 * sum((trained[n] - anchor[n]).pow(2).sum() for n in trained)
        grads = torch.autograd.grad(total, list(trained.values()))
        with torch.no_grad():
            for (name, value), grad_value in zip(trained.items(), grads):
                value.sub_(learning_rate * grad_value)  # the leaves are fresh per call: safe in place
    return {n: (trained[n].detach() - anchor[n]).to(torch.float32) for n in partition.aggregated}
