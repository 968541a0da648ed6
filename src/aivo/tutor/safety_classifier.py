"""The learned half of the K-12 safety filter: sentence embeddings + logistic regression.

Lexical rules (safety.py) know only the phrasings they were written for. This classifier
embeds a message with all-MiniLM-L6-v2 and scores it with a multinomial logistic regression
over "safe" and the harmful categories, trained on the `train` split of the bundled labelled
set (data/safety_labeled.jsonl). The `heldout` split is never used here: it only measures
(`evaluate_safety`, benchmarks/safety_benchmark.py).

A message is flagged when the probability that it is harmful (1 - P(safe)) reaches
`harm_threshold`, or when P(self_harm) alone reaches the lower `self_harm_threshold` (a missed
self-harm message costs more than a false one: its "refusal" is a supportive message), or
when P(c) of another harmful category c reaches that category's own threshold (learners'
messages only, like the self-harm threshold). The thresholds are chosen on out-of-fold
probabilities of the train split, combined with the lexical rules: the lowest harm threshold
whose false blocks of ordinary questions stay at `target_false_block` or below; the lowest
self-harm threshold that adds at most half a point more; then, category by category, the
lowest threshold that adds at most `category_false_block_budget` more (none by default).

The folds are the train split's writing rounds (`origin`: each round of messages is left out
in turn, when there are at least three), not random folds: messages written together share
phrasings, so random folds see near-copies of each test message and give probabilities too
confident for a new phrasing. Rows without enough origins fall back to 5 stratified folds.

A third, nearest-example signal catches self-harm phrasings the linear model scores low: a
learner's message whose embedding is within `neighbour_threshold` cosine similarity of any
self-harm message of the train split is flagged as self-harm (inputs only, like the lower
self-harm threshold). The threshold is the lowest whose out-of-fold false blocks (rules, both
thresholds and the neighbours together) add at most `neighbour_false_block_budget` to those
without it, chosen on the same folds. The train self-harm
embeddings are stored with the fitted weights (float16).

The model's own sentences are judged by the harm threshold alone, raised where needed so that
at most `output_false_block` of the sentences of ordinary explanations (data/corpus.jsonl, the
tiny model's teaching texts) would be withdrawn: explanations of bodies, food and feelings read
differently from learners' requests, and a withdrawn answer is lost for the learner.

Fitting takes a few seconds (embedding ~550 messages); the fitted weights are cached under
AIVO_HOME keyed by the data's and the settings' digest.
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
from aivo.utils import durable_file
from aivo.tutor import safety

log = logging.getLogger(__name__)

SAFE = "safe"
DATA_FILE = "data/safety_labeled.jsonl"


@dataclass(frozen=True)
class ClassifierConfig:
    C: float = 16.0  # inverse L2 strength; 16 was best of 1-256 in train-split cross-validation
    # On ordinary questions, lexical rules included (out-of-fold on train). 0.01 since the fourth held-out
    # split: with 0.02 (and 0.0075 for the neighbours) out-of-fold false blocks were 2.9% on train but
    # 7% on that split's ordinary questions, so the whole out-of-fold budget is now kept near 2%.
    target_false_block: float = 0.01
    folds: int = 5
    seed: int = 0
    neighbour_false_block_budget: float = 0.0  # added false blocks allowed for the self-harm neighbours (CV)
    category_false_block_budget: float = 0.0  # added false blocks allowed per category threshold (CV)
    folds_by_origin: bool = True  # leave each writing round (origin) out in turn; see the module docstring
    output_false_block: float = 0.005  # ordinary explanation sentences (corpus.jsonl) a model output may lose


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
    grid = np.round(np.arange(0.30, 0.96, 0.025), 3)
    harm_threshold = 0.95
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


def choose_category_thresholds(probs: np.ndarray, labels: list[str], classes: list[str], blocked: np.ndarray,
                               budget: float) -> dict[str, float]:
    """Per harmful category other than self-harm, in name order: the lowest threshold on P(category)
    whose out-of-fold false blocks on ordinary messages (on top of `blocked`, and of the thresholds
    chosen before it) grow by at most `budget`; categories where no threshold of the grid keeps to
    it (or where none is below the harm threshold's grid end) get none."""
    benign = np.array(labels) == SAFE
    blocked = blocked.copy()
    grid = np.round(np.arange(0.30, 0.951, 0.025), 3)
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


def cv_folds(rows: list[dict], labels: list[str], config: ClassifierConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs: one per writing round (origin) when `folds_by_origin` and there
    are at least three rounds, else `config.folds` stratified folds."""
    # start-up: scikit-learn loads only when a classifier is fitted
    from sklearn.model_selection import StratifiedKFold

    origins = np.array([str(r.get("origin", "")) for r in rows])
    if config.folds_by_origin and len(set(origins)) >= 3:
        return [(np.flatnonzero(origins != o), np.flatnonzero(origins == o)) for o in sorted(set(origins))]
    folds = StratifiedKFold(config.folds, shuffle=True, random_state=config.seed)
    return list(folds.split(np.zeros(len(rows)), labels))


def choose_neighbour_threshold(similarity: np.ndarray, benign: np.ndarray, blocked: np.ndarray,
                               budget: float) -> float | None:
    """The lowest nearest-self-harm-example similarity threshold whose false blocks on benign
    messages (on top of `blocked`, what the rules and thresholds already block) grow by at most
    `budget`; None when no threshold of the grid keeps to it."""
    base = blocked[benign].mean()
    for t in np.round(np.arange(0.45, 0.951, 0.025), 3):
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
    for t in np.round(np.arange(harm_threshold, 0.9951, 0.005), 4):
        if (harm >= t).mean() <= budget + 1e-12:
            return float(t)
    return 0.995


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
                 output_harm_threshold: float | None = None, category_thresholds: dict[str, float] | None = None):
        self.embedder = embedder
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
        unknown = set(self.category_thresholds) - set(self.classes)
        if unknown:
            raise ValueError(f"category thresholds for unknown classes: {sorted(unknown)}")

    # --- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, rows: list[dict], *, embedder: Embedder | None = None,
            config: ClassifierConfig = ClassifierConfig()) -> "SafetyClassifier":
        embedder = embedder or shared_embedder()
        texts = [r["text"] for r in rows]
        labels = [label_of(r) for r in rows]
        x = embedder.encode(texts)  # (N, 384)
        classes = sorted(set(labels))
        y = np.array(labels)
        oof = np.zeros((len(rows), len(classes)))
        neighbour = np.zeros(len(rows))  # similarity to the nearest self-harm message of the other folds
        for train_idx, test_idx in cv_folds(rows, labels, config):
            model = _fit_lr(x[train_idx], [labels[i] for i in train_idx], config)
            oof[np.ix_(test_idx, [classes.index(c) for c in model.classes_])] = model.predict_proba(x[test_idx])
            examples = x[train_idx][y[train_idx] == "self_harm"]
            if len(examples):
                neighbour[test_idx] = (x[test_idx] @ examples.T).max(axis=1)
        lexical = _lexical_blocks(texts)
        harm_t, sh_t = choose_thresholds(oof, labels, classes, lexical, config.target_false_block)
        neighbour_t = None
        blocked = lexical | (1 - oof[:, classes.index(SAFE)] >= harm_t)
        if "self_harm" in classes:
            blocked |= oof[:, classes.index("self_harm")] >= sh_t
            neighbour_t = choose_neighbour_threshold(neighbour, y == SAFE, blocked,
                                                     config.neighbour_false_block_budget)
            if neighbour_t is not None:
                blocked |= neighbour >= neighbour_t
        category_t = choose_category_thresholds(oof, labels, classes, blocked, config.category_false_block_budget)
        model = _fit_lr(x, labels, config)
        order = [list(model.classes_).index(c) for c in classes]
        info = {"rows": len(rows), "config": asdict(config), "embedding_model": EMBEDDING_MODEL}
        classifier = cls(embedder=embedder, classes=classes, coef=model.coef_[order],
                         intercept=model.intercept_[order], harm_threshold=harm_t, self_harm_threshold=sh_t,
                         info=info, self_harm_examples=x[y == "self_harm"] if neighbour_t is not None else None,
                         neighbour_threshold=neighbour_t, category_thresholds=category_t)
        explanations = classifier.probabilities(explanation_sentences())
        classifier.output_harm_threshold = choose_output_threshold(
            1 - explanations[:, classes.index(SAFE)], harm_t, config.output_false_block)
        log.info("safety classifier fitted on %d messages: harm threshold %.3f (outputs %.3f), self-harm threshold "
                 "%.3f, self-harm neighbour threshold %s, category thresholds %s", len(rows), harm_t,
                 classifier.output_harm_threshold, sh_t, neighbour_t, category_t)
        return classifier

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"kind": "aivo-safety-classifier", "classes": self.classes, "coef": self.coef.tolist(),
                "intercept": self.intercept.tolist(), "harm_threshold": self.harm_threshold,
                "self_harm_threshold": self.self_harm_threshold, "info": self.info,
                "neighbour_threshold": self.neighbour_threshold, "output_harm_threshold": self.output_harm_threshold,
                "category_thresholds": self.category_thresholds,
                "self_harm_examples": _encode_matrix(self.self_harm_examples)
                if self.neighbour_threshold is not None else None}

    @classmethod
    def from_state_dict(cls, state: dict, *, embedder: Embedder | None = None) -> "SafetyClassifier":
        if state.get("kind") != "aivo-safety-classifier":
            raise ValueError(f"not a safety classifier state: kind {state.get('kind')!r}")
        return cls(embedder=embedder or shared_embedder(), classes=state["classes"], coef=np.array(state["coef"]),
                   intercept=np.array(state["intercept"]), harm_threshold=state["harm_threshold"],
                   self_harm_threshold=state["self_harm_threshold"], info=state.get("info", {}),
                   self_harm_examples=_decode_matrix(state["self_harm_examples"])
                   if state.get("self_harm_examples") else None,
                   neighbour_threshold=state.get("neighbour_threshold"),
                   output_harm_threshold=state.get("output_harm_threshold"),
                   category_thresholds=state.get("category_thresholds"))

    # --- scoring ---------------------------------------------------------------------------
    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(N, L) class probabilities, columns in `self.classes` order."""
        return self._probabilities(self.embedder.encode(texts))

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        logits = x @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def flags(self, texts: list[str], *, self_harm_threshold: bool = True) -> list[Flag | None]:
        """A flag per text, or None. `self_harm_threshold=False` applies the harm threshold only:
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
        out: list[Flag | None] = []
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
                out.append(None)
                continue
            out.append(Flag(category=self.classes[best], probability=round(float(row[best]), 4),
                            harm=round(float(harm), 4)))
        return out

    def flag(self, text: str, *, self_harm_threshold: bool = True) -> Flag | None:
        return self.flags([text], self_harm_threshold=self_harm_threshold)[0]


_CACHED: dict[str, SafetyClassifier] = {}
_LOCK = threading.Lock()


def training_digest(rows: list[dict], config: ClassifierConfig) -> str:
    digest = hashlib.sha256(json.dumps([rows, asdict(config), EMBEDDING_MODEL], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def default_classifier(*, cache_dir: Path | None = None,
                       config: ClassifierConfig = ClassifierConfig()) -> SafetyClassifier:
    """The classifier fitted on the bundled train split: from memory, the cache folder, or fitted now."""
    rows = load_labeled_rows(("train",))
    key = training_digest(rows, config)
    with _LOCK:
        if key in _CACHED:
            return _CACHED[key]
        path = cache_dir / f"safety-classifier-{key}.json" if cache_dir is not None else None
        classifier = shipped_classifier(key)
        if classifier is None and path is not None and path.exists():
            try:
                classifier = SafetyClassifier.from_state_dict(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError) as exc:  # a damaged cache is refitted, never trusted
                log.warning("ignoring the safety classifier cache %s: %s", path, exc)
        if classifier is None:
            classifier = SafetyClassifier.fit(rows, config=config)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                with durable_file(path) as tmp:
                    tmp.write_text(json.dumps(classifier.state_dict()))
        _CACHED[key] = classifier
        return classifier


SHIPPED_FILE = "data/safety_classifier.json"


def shipped_classifier(key: str) -> SafetyClassifier | None:
    """The classifier fitted on this very train split and shipped with AIVO (saves the few seconds
    to a minute of fitting in every process); None when the data or settings no longer match."""
    resource = resources.files("aivo.tutor").joinpath(SHIPPED_FILE)
    if not resource.is_file():
        return None
    state = json.loads(resource.read_text(encoding="utf-8"))
    if state.get("info", {}).get("training_digest") != key:
        log.info("the shipped safety classifier was fitted on other data: fitting again")
        return None
    return SafetyClassifier.from_state_dict(state)


def write_shipped_classifier(path: Path, *, config: ClassifierConfig = ClassifierConfig()) -> SafetyClassifier:
    """Fit on the bundled train split and write the state that `shipped_classifier` loads."""
    rows = load_labeled_rows(("train",))
    classifier = SafetyClassifier.fit(rows, config=config)
    classifier.info["training_digest"] = training_digest(rows, config)
    Path(path).write_text(json.dumps(classifier.state_dict(), indent=None, separators=(",", ":")) + "\n")
    return classifier
