"""`MainBrain`: the knowledge-tracing sequence model with a shared part and a small personal part.

Parameter groups (stable name prefixes; `shared_parameter_names` / `personal_parameter_names`):

* `embed.*`    item, skill, item-type and (skill, answer) [and (item, answer)] embeddings, the
               projection of the history features into the encoder input.
* `encoder.*`  the recurrent encoder (GRU or LSTM) and its learned initial state.
* `head.*`     the correctness MLP, item/skill difficulty biases, difficulty and content heads.
* `personal.*` per-learner adjustments of the correctness logit (zero = no change): a global
               bias, a log-scale, per-item-type and per-skill offsets and a linear read-out of
               the state. The Main Brain keeps them at zero; per-learner clones train them.

Causality: the prediction at step t uses the encoder state after steps 0..t-1 (a learned initial
state at t = 0), the identity of item t and history features of steps < t. Answer t is never seen.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from aivo.brain.config import BrainConfig
from aivo.brain.features import FEATURE_NAMES, NUM_FEATURES
from aivo.brain.vocab import PAD

EXPECTED_LOGODDS = FEATURE_NAMES.index("target_expected_logodds")
PARAMETER_GROUPS = ("embed", "encoder", "head", "personal")
SHARED_GROUPS = ("embed", "encoder", "head")


@dataclass
class BrainOutput:
    correct_logit: torch.Tensor  # (B, T) logit of P(correct at t | steps < t)
    difficulty_logits: torch.Tensor  # (B, T, L) item t's difficulty level, from the state only
    content_logits: torch.Tensor  # (B, T, V_skills) item t's first skill, from the state only
    state: torch.Tensor  # (B, T, H) encoder state used for step t (after steps < t)


def _masked_mean(vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(..., S, D) vectors, (..., S) bool -> (..., D) mean over the True entries (0 if none)."""
    weights = mask.unsqueeze(-1).to(vectors.dtype)
    return (vectors * weights).sum(-2) / weights.sum(-2).clamp_min(1.0)


class Embeddings(nn.Module):
    def __init__(self, config: BrainConfig, *, num_items: int, num_skills: int, num_item_types: int):
        super().__init__()
        d = config.embed_dim
        self.item = nn.Embedding(num_items, d, padding_idx=PAD)
        self.skill = nn.Embedding(num_skills, d, padding_idx=PAD)
        self.item_type = nn.Embedding(num_item_types, d, padding_idx=PAD)
        # Row 2 * skill + answer: what answering this skill right/wrong says about the learner.
        self.skill_response = nn.Embedding(2 * num_skills, d)
        self.item_response = nn.Embedding(2 * num_items, d) if config.item_response_embedding else None
        # Shared across items, so rare items still carry their answer: right/wrong, and how
        # surprising it was ((answer - expected rate) times a learned direction).
        self.answer = nn.Embedding(2, d)
        self.surprise = nn.Parameter(torch.zeros(d))
        self.features = nn.Linear(NUM_FEATURES, d) if config.features_in_encoder else None
        # Evidence vectors of (item, answer) and (skill, answer), summed over the history (see Encoder).
        # "free": one vector per (item, answer) and (skill, answer). "residual": a factor vector per
        # item and skill, scaled by (answer - expected answer) -- the sum over a history is then a
        # one-step estimate of the learner's latent ability along those factors, and the same
        # factors query it (a logistic matrix-factorization view; far fewer free parameters).
        r = config.evidence_dim
        self.evidence_kind = config.evidence_kind
        rows = 1 if config.evidence_kind == "residual" else 2
        self.item_evidence = nn.Embedding(rows * num_items, r) if r else None
        self.skill_evidence = nn.Embedding(rows * num_skills, r) if r else None
        for table in (self.item, self.skill, self.item_type, self.skill_response, self.item_response,
                      self.item_evidence, self.skill_evidence, self.answer):
            if table is not None:
                nn.init.normal_(table.weight, std=0.1)
                if table.padding_idx is not None:
                    with torch.no_grad():
                        table.weight[table.padding_idx].zero_()

    def question(self, item: torch.Tensor, skills: torch.Tensor, item_type: torch.Tensor) -> torch.Tensor:
        """What is asked, without the answer: item (...), skills (..., S) -> (..., D)."""
        return self.item(item) + _masked_mean(self.skill(skills), skills != PAD) + self.item_type(item_type)

    def interaction(self, item: torch.Tensor, skills: torch.Tensor, item_type: torch.Tensor,
                    correct: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """What happened at each step, answer included: (B, T) -> (B, T, D)."""
        answer = correct.long()
        expected = torch.sigmoid(features[..., EXPECTED_LOGODDS])
        x = self.question(item, skills, item_type) + self.answer(answer)
        x = x + (correct - expected).unsqueeze(-1) * self.surprise
        x = x + _masked_mean(self.skill_response(2 * skills + answer.unsqueeze(-1)), skills != PAD)
        if self.item_response is not None:
            x = x + self.item_response(2 * item + answer)
        if self.features is not None:
            x = x + self.features(features)
        return x

    def evidence_factors(self, item: torch.Tensor, skills: torch.Tensor) -> torch.Tensor:
        """(...) items, (..., S) skills -> (..., R) factor vectors ("residual" evidence only)."""
        return self.item_evidence(item) + _masked_mean(self.skill_evidence(skills), skills != PAD)

    def evidence(self, item: torch.Tensor, skills: torch.Tensor, correct: torch.Tensor,
                 features: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, T, R) evidence vector of each interaction (answer included)."""
        if self.evidence_kind == "residual":
            expected = torch.sigmoid(features[..., EXPECTED_LOGODDS])
            return (correct - expected).unsqueeze(-1) * self.evidence_factors(item, skills)
        answer = correct.long()
        vectors = self.item_evidence(2 * item + answer)
        return vectors + _masked_mean(self.skill_evidence(2 * skills + answer.unsqueeze(-1)), skills != PAD)


def decayed_prefix_sums(values: torch.Tensor, decays: tuple[float, ...]) -> torch.Tensor:
    """(B, T, R) -> (B, T, R * len(decays)): at t, sum over i < t of decay**(t - 1 - i) * values[i].

    Exclusive (step t's own value is not included), so the result at t is known before answer t."""
    length = values.shape[1]
    out = []
    for decay in decays:
        if decay == 1.0:
            inclusive = torch.cumsum(values, dim=1)
        else:
            t = torch.arange(length, device=values.device)
            lag = (t[:, None] - t[None, :]).to(values.dtype)  # (T, T) t - i
            weights = torch.where(lag >= 0, decay ** lag.clamp_min(0), torch.zeros_like(lag))
            inclusive = torch.einsum("ti,bir->btr", weights, values)
        out.append(torch.cat([torch.zeros_like(inclusive[:, :1]), inclusive[:, :-1]], dim=1))
    return torch.cat(out, dim=-1)


class Encoder(nn.Module):
    """Two summaries of the steps before t, concatenated into the state (B, T, H + E):
    a recurrent state (GRU/LSTM, layer-normed) and E = evidence_dim * len(evidence_decays)
    (decayed) sums of evidence vectors: a learned, additive "how much right/wrong on what" memory
    in the spirit of logistic-regression KT models (counts of successes/failures per skill)."""

    def __init__(self, config: BrainConfig):
        super().__init__()
        self.evidence_decays = tuple(config.evidence_decays) if config.evidence_dim else ()
        self.evidence_normalize = config.evidence_normalize
        self.prior_count = config.running_rate_prior_count
        rnn_class = nn.GRU if config.encoder == "gru" else nn.LSTM
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = rnn_class(config.embed_dim, config.hidden_dim, num_layers=config.num_layers,
                             batch_first=True, dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.norm = nn.LayerNorm(config.hidden_dim)
        self.initial_state = nn.Parameter(torch.zeros(config.hidden_dim))

    def forward(self, x: torch.Tensor, evidence: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, D) interactions, evidence (B, T, R) or None -> (B, T, H + E) states for step t."""
        after, _ = self.rnn(self.dropout(x))  # (B, T, H): after step t
        after = self.norm(after)
        start = self.initial_state.expand(x.shape[0], 1, -1)
        recurrent = torch.cat([start, after[:, :-1]], dim=1)
        if evidence is None:
            return recurrent
        sums = decayed_prefix_sums(evidence, self.evidence_decays)
        steps = torch.arange(x.shape[1], device=x.device, dtype=x.dtype).unsqueeze(-1)  # (T, 1)
        sums = normalize_evidence(sums, steps, how=self.evidence_normalize, prior_count=self.prior_count)
        return torch.cat([recurrent, sums], dim=-1)


def normalize_evidence(sums: torch.Tensor, steps: torch.Tensor, *, how: str, prior_count: float) -> torch.Tensor:
    """Evidence sums after `steps` answers as the encoder's state carries them: "sqrt" keeps the
    scale of long histories bounded, "mean" makes a shrunk mean (an ability estimate, not a total),
    anything else leaves the sums. One place for training, batch serving and per-learner serving."""
    if how == "sqrt":
        return sums / torch.sqrt(1.0 + steps)
    if how == "mean":
        return sums / (steps + prior_count)
    return sums


class Heads(nn.Module):
    def __init__(self, config: BrainConfig, *, num_items: int, num_skills: int):
        super().__init__()
        self.hidden_dim = config.hidden_dim
        evidence = config.evidence_dim * len(config.evidence_decays)
        state_dim = config.hidden_dim + evidence
        # Which evidence matters for this question: a (E,) query per question, multiplied with the
        # evidence sums; their sum enters the logit linearly, the product also enters the MLP.
        # ("residual" evidence is queried by the question's own factors instead.)
        self.num_decays = len(config.evidence_decays)
        self.evidence_query = (nn.Linear(config.embed_dim, evidence)
                               if evidence and config.evidence_kind == "free" else None)
        inputs = state_dim + config.embed_dim + NUM_FEATURES + evidence
        self.correct = nn.Sequential(
            nn.Linear(inputs, config.head_hidden_dim), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(config.head_hidden_dim, 1),
        )
        # IRT-style easiness of each item and skill, added to the MLP's logit.
        self.item_bias = nn.Embedding(num_items, 1, padding_idx=PAD)
        self.skill_bias = nn.Embedding(num_skills, 1, padding_idx=PAD)
        nn.init.zeros_(self.item_bias.weight)
        nn.init.zeros_(self.skill_bias.weight)
        self.difficulty = nn.Linear(state_dim, config.num_difficulty_levels)
        # Next skill: the state projected into the skill-embedding space, scored against every skill.
        self.content = nn.Linear(state_dim, config.embed_dim)
        self.content_bias = nn.Parameter(torch.zeros(num_skills))


class Personal(nn.Module):
    """A learner's own adjustment of the correctness logit; all zeros is the identity."""

    def __init__(self, config: BrainConfig, *, num_skills: int, num_item_types: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))
        self.log_scale = nn.Parameter(torch.zeros(1))
        self.item_type_offset = nn.Parameter(torch.zeros(num_item_types))
        self.skill_offset = nn.Parameter(torch.zeros(num_skills)) if config.personal_skill_offsets else None
        self.state_readout = nn.Parameter(torch.zeros(config.hidden_dim))  # reads the recurrent state

    def forward(self, logit, state, skills, item_type) -> torch.Tensor:
        adjusted = logit * self.log_scale.exp() + self.bias + self.item_type_offset[item_type]
        adjusted = adjusted + state[..., :self.state_readout.shape[0]] @ self.state_readout
        if self.skill_offset is not None:
            adjusted = adjusted + _masked_mean(self.skill_offset[skills].unsqueeze(-1), skills != PAD).squeeze(-1)
        return adjusted


class MainBrain(nn.Module):
    def __init__(self, config: BrainConfig, *, num_items: int, num_skills: int, num_item_types: int):
        super().__init__()
        self.config = config
        self.sizes = {"num_items": num_items, "num_skills": num_skills, "num_item_types": num_item_types}
        self.embed = Embeddings(config, num_items=num_items, num_skills=num_skills, num_item_types=num_item_types)
        self.encoder = Encoder(config)
        self.head = Heads(config, num_items=num_items, num_skills=num_skills)
        self.personal = Personal(config, num_skills=num_skills, num_item_types=num_item_types)

    def correct_logit(self, state: torch.Tensor, item: torch.Tensor, skills: torch.Tensor,
                      item_type: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Logit of P(correct) of a question given a state: state (..., H + E), item (...) -> (...)."""
        question = self.embed.question(item, skills, item_type)
        parts = [state, question, features]
        linear = self.head.item_bias(item).squeeze(-1)
        if self.config.evidence_dim:
            if self.head.evidence_query is not None:
                query = self.head.evidence_query(question)
            else:
                query = self.embed.evidence_factors(item, skills)
                query = torch.cat([query] * self.head.num_decays, dim=-1)
            matched = query * state[..., self.head.hidden_dim:]
            parts.append(matched)
            linear = linear + matched.sum(-1)
        logit = self.head.correct(torch.cat(parts, dim=-1)).squeeze(-1) + linear
        logit = logit + _masked_mean(self.head.skill_bias(skills), skills != PAD).squeeze(-1)
        return self.personal(logit, state, skills, item_type)

    def forward(self, *, item: torch.Tensor, skills: torch.Tensor, item_type: torch.Tensor,
                correct: torch.Tensor, features: torch.Tensor) -> BrainOutput:
        """item/item_type/correct (B, T), skills (B, T, S), features (B, T, F) -> BrainOutput."""
        x = self.embed.interaction(item, skills, item_type, correct, features)  # (B, T, D)
        evidence = self.embed.evidence(item, skills, correct, features) if self.config.evidence_dim else None
        state = self.encoder(x, evidence)  # (B, T, H + E)
        logit = self.correct_logit(state, item, skills, item_type, features)
        difficulty = self.head.difficulty(state)
        content = self.head.content(state) @ self.embed.skill.weight.T + self.head.content_bias
        return BrainOutput(correct_logit=logit, difficulty_logits=difficulty, content_logits=content, state=state)

    def dp_compatible(self) -> "MainBrain":
        """A copy whose recurrent layer is Opacus' DPGRU/DPLSTM (same weights and outputs), so that
        Opacus can compute per-sample gradients for DP-SGD. `named_parameters()` names are
        unchanged; its `state_dict()` also lists Opacus' aliases (`encoder.rnn.l0.ih.weight`, ...),
        so exchange weights through `named_parameters()`."""
        # start-up: Opacus loads only when DP-SGD needs this copy
        from opacus.layers import DPGRU, DPLSTM

        clone = copy.deepcopy(self)
        rnn = clone.encoder.rnn
        dp_class = DPGRU if isinstance(rnn, nn.GRU) else DPLSTM
        replacement = dp_class(rnn.input_size, rnn.hidden_size, num_layers=rnn.num_layers,
                               batch_first=True, dropout=rnn.dropout)
        replacement.load_state_dict(rnn.state_dict())
        clone.encoder.rnn = replacement
        return clone

    # --- parameter groups -------------------------------------------------------------
    def parameter_names(self, *groups: str) -> list[str]:
        unknown = set(groups) - set(PARAMETER_GROUPS)
        if unknown:
            raise ValueError(f"unknown parameter group(s) {sorted(unknown)}; known: {PARAMETER_GROUPS}")
        return [name for name, _ in self.named_parameters() if name.split(".", 1)[0] in groups]

    def shared_parameter_names(self) -> list[str]:
        return self.parameter_names(*SHARED_GROUPS)

    def personal_parameter_names(self) -> list[str]:
        return self.parameter_names("personal")

    def num_parameters(self, *groups: str) -> int:
        names = set(self.parameter_names(*(groups or PARAMETER_GROUPS)))
        return sum(p.numel() for n, p in self.named_parameters() if n in names)
