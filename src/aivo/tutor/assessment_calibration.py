"""Calibrating the assessment thresholds on a small labeled set.

The bundled set (data/assessment_labeled.jsonl) has 12 questions across subjects, each with
reference answers, exemplars, rubric keywords and six student answers labeled `correct`,
`partial`, `misconception` or `off_topic`. Labels map to target scores (GOLD_SCORES); the
calibration grid-searches `sim_low`, `sim_high` and `keyword_weight` for the lowest mean
absolute error, and puts the off-topic similarity cut between the labeled off-topic and
on-topic answers. Held-out figures come from two-fold cross-validation over questions
(calibrate on half the questions, evaluate on the other half), so they are not fitted.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from importlib import resources

import numpy as np

from aivo.tutor.assessment import (AssessmentCalibration, Assessor, Rubric, match_keywords,
                                   match_misconceptions, score_answer)

# "adversarial": wrong answers stuffed with the rubric's words; they must score as wrong.
GOLD_SCORES = {"correct": 90.0, "partial": 50.0, "misconception": 20.0, "off_topic": 0.0, "adversarial": 10.0}
WRONG_LABELS = ("misconception", "off_topic", "adversarial")
LABELS = tuple(GOLD_SCORES)


@dataclass(frozen=True)
class LabeledAnswer:
    item_id: str
    label: str
    similarity: float
    matched: tuple[str, ...]
    missing: tuple[str, ...]
    misconceptions: tuple[str, ...] = ()


@dataclass(frozen=True)
class CalibrationReport:
    calibration: AssessmentCalibration
    mae: float  # on all answers, with the fitted calibration
    heldout_mae: float  # two-fold cross-validation over questions
    heldout_ranking_accuracy: float  # correct > misconception > off_topic, per question
    heldout_level_accuracy: float
    mean_score_by_label: dict[str, float]
    num_items: int
    num_answers: int
    # keyword stuffing: share of adversarial answers scored "beginning" (< 40), with the rubrics'
    # misconception lists, and with negation-aware keywords alone (misconception lists left out)
    adversarial_scored_wrong: float = float("nan")
    adversarial_scored_wrong_without_misconceptions: float = float("nan")
    level_agreement: float = float("nan")  # every answer, fitted calibration

    def to_dict(self) -> dict:
        d = asdict(self)
        d["calibration"] = asdict(self.calibration)
        return d


def load_labeled_set() -> list[dict]:
    text = resources.files("aivo.tutor").joinpath("data/assessment_labeled.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def rubric_of(item: dict) -> Rubric:
    return Rubric(reference_answers=tuple(item.get("reference_answers", ())),
                  exemplars=tuple(item.get("exemplars", ())), keywords=tuple(item.get("rubric_keywords", ())),
                  learning_objective=item.get("learning_objective"), question=item.get("question"),
                  misconceptions=tuple(item.get("misconceptions", ())))


def featurize(assessor: Assessor, items: Sequence[dict]) -> list[LabeledAnswer]:
    answers = []
    for item in items:
        rubric = rubric_of(item)
        for response in item["responses"]:
            matched, missing = match_keywords(response["text"], rubric.keywords)
            similarity = assessor.similarity(response["text"], rubric.references)
            answers.append(LabeledAnswer(item_id=item["id"], label=response["label"], similarity=similarity,
                                         matched=tuple(matched), missing=tuple(missing),
                                         misconceptions=tuple(match_misconceptions(response["text"],
                                                                                   rubric.misconceptions))))
    return answers


def _scores(answers: Sequence[LabeledAnswer], calibration: AssessmentCalibration) -> np.ndarray:
    return np.array([score_answer(similarity=a.similarity, matched=list(a.matched), missing=list(a.missing),
                                  calibration=calibration, misconceptions=a.misconceptions).correctness
                     for a in answers])


def _mae(answers: Sequence[LabeledAnswer], calibration: AssessmentCalibration) -> float:
    gold = np.array([GOLD_SCORES[a.label] for a in answers])
    return float(np.abs(_scores(answers, calibration) - gold).mean())


def ranking_accuracy(answers: Sequence[LabeledAnswer], calibration: AssessmentCalibration) -> float:
    """Share of (correct, misconception, off_topic) triples of one question ranked in that order."""
    scores = _scores(answers, calibration)
    by_item: dict[str, dict[str, list[float]]] = {}
    for answer, score in zip(answers, scores):
        by_item.setdefault(answer.item_id, {}).setdefault(answer.label, []).append(score)
    good = total = 0
    for labels in by_item.values():
        for c, m, o in itertools.product(labels.get("correct", []), labels.get("misconception", []),
                                         labels.get("off_topic", [])):
            total += 1
            good += int(c > m > o)
    return good / total if total else float("nan")


def level_accuracy(answers: Sequence[LabeledAnswer], calibration: AssessmentCalibration) -> float:
    """correct -> excellent/good, partial -> developing, misconception/off_topic -> beginning."""
    expected = {"correct": {"excellent", "good"}, "partial": {"developing"},
                "misconception": {"beginning", "developing"}, "off_topic": {"beginning"},
                "adversarial": {"beginning"}}
    levels = [calibration.level(s) for s in _scores(answers, calibration)]
    return float(np.mean([lvl in expected[a.label] for a, lvl in zip(answers, levels)]))


def fit_calibration(answers: Sequence[LabeledAnswer],
                    base: AssessmentCalibration = AssessmentCalibration()) -> AssessmentCalibration:
    off = [a.similarity for a in answers if a.label == "off_topic"]
    on = [a.similarity for a in answers if a.label != "off_topic"]
    cut = round((max(off) + min(on)) / 2, 3) if off and on and max(off) < min(on) else base.off_topic_similarity
    best, best_mae = base, float("inf")
    for low, high, w in itertools.product(np.arange(0.0, 0.55, 0.05), np.arange(0.6, 1.0, 0.05),
                                          np.arange(0.0, 0.95, 0.1)):
        candidate = replace(base, sim_low=round(float(low), 2), sim_high=round(float(high), 2),
                            keyword_weight=round(float(w), 2), off_topic_similarity=cut)
        mae = _mae(answers, candidate)
        if mae < best_mae - 1e-9:
            best, best_mae = candidate, mae
    return best


def calibrate_assessment(*, assessor: Assessor, items: Sequence[dict] | None = None) -> CalibrationReport:
    items = list(items if items is not None else load_labeled_set())
    answers = featurize(assessor, items)
    fitted = fit_calibration(answers)
    ids = sorted({a.item_id for a in answers})
    folds = [set(ids[0::2]), set(ids[1::2])]
    held_mae, held_rank, held_level = [], [], []
    for test_ids in folds:
        train = [a for a in answers if a.item_id not in test_ids]
        test = [a for a in answers if a.item_id in test_ids]
        calibration = fit_calibration(train)
        held_mae.append(_mae(test, calibration) * len(test))
        held_rank.append(ranking_accuracy(test, calibration))
        held_level.append(level_accuracy(test, calibration) * len(test))
    scores = _scores(answers, fitted)
    by_label = {label: round(float(np.mean([s for a, s in zip(answers, scores) if a.label == label])), 1)
                for label in LABELS if any(a.label == label for a in answers)}
    adversarial = [a for a in answers if a.label == "adversarial"]
    cut = fitted.level_cutoffs[-2][1]  # the "developing" threshold: below it is "beginning"
    wrong = float(np.mean(_scores(adversarial, fitted) < cut)) if adversarial else float("nan")
    bare = [replace(a, misconceptions=()) for a in adversarial]
    wrong_bare = float(np.mean(_scores(bare, fitted) < cut)) if bare else float("nan")
    return CalibrationReport(
        adversarial_scored_wrong=round(wrong, 3), adversarial_scored_wrong_without_misconceptions=round(wrong_bare, 3),
        level_agreement=round(level_accuracy(answers, fitted), 3),
        calibration=fitted, mae=round(_mae(answers, fitted), 2),
        heldout_mae=round(sum(held_mae) / len(answers), 2),
        heldout_ranking_accuracy=round(float(np.mean(held_rank)), 3),
        heldout_level_accuracy=round(sum(held_level) / len(answers), 3),
        mean_score_by_label=by_label, num_items=len(items), num_answers=len(answers))
