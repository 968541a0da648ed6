"""Assessment on the labeled set: ranking, calibration, latency, feedback."""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from aivo.errors import DataError
from aivo.tutor.assessment import AssessmentCalibration, Assessor, Rubric, match_keywords, score_answer
from aivo.tutor.assessment_calibration import calibrate_assessment, load_labeled_set, rubric_of


@pytest.fixture(scope="module")
def assessor():
    return Assessor()


def test_correct_paraphrase_beats_misconception_beats_off_topic(assessor):
    for item in load_labeled_set():
        rubric = rubric_of(item)
        scores: dict[str, list[float]] = {}
        for response in item["responses"]:
            score = assessor.score(answer=response["text"], rubric=rubric)
            scores.setdefault(response["label"], []).append(score.correctness)
        correct, misconception, off = (np.mean(scores[k]) for k in ("correct", "misconception", "off_topic"))
        assert correct > misconception > off, (item["id"], scores)
        # a correct paraphrase is never "beginning"; one that avoids the rubric's words (and
        # synonyms) can land in "developing": rubric keywords need their synonyms listed
        assert min(scores["correct"]) >= 40
        assert max(scores["off_topic"]) == 0


def test_ranking_on_a_labeled_set_written_for_the_tests(assessor):
    """Questions the thresholds were never fitted on (tests/tutor/assessment_test_set.jsonl):
    a correct paraphrase scores above an on-topic misconception, and that above an off-topic answer."""
    import json
    from pathlib import Path

    items = [json.loads(line) for line in (Path(__file__).parent / "assessment_test_set.jsonl").read_text()
             .splitlines() if line.strip()]
    calibration_questions = {item["question"] for item in load_labeled_set()}
    assert len(items) == 6 and not {item["question"] for item in items} & calibration_questions
    for item in items:
        rubric = rubric_of(item)
        scores: dict[str, list[float]] = {}
        for response in item["responses"]:
            scores.setdefault(response["label"], []).append(assessor.score(answer=response["text"],
                                                                           rubric=rubric).correctness)
        assert min(scores["correct"]) > max(scores["misconception"]) > max(scores["off_topic"]), (item["id"], scores)


def test_stored_calibration_is_the_fitted_one_and_generalizes(assessor):
    report = calibrate_assessment(assessor=assessor)
    fitted, stored = report.calibration, AssessmentCalibration()
    assert (fitted.sim_low, fitted.sim_high, fitted.keyword_weight) == (stored.sim_low, stored.sim_high,
                                                                         stored.keyword_weight)
    assert fitted.off_topic_similarity == pytest.approx(stored.off_topic_similarity, abs=1e-3)
    assert report.heldout_ranking_accuracy >= 0.9 and report.heldout_mae <= 15
    assert report.mean_score_by_label["correct"] > 80 and report.mean_score_by_label["off_topic"] < 5


def test_latency_per_answer_with_cached_references(assessor):
    item = load_labeled_set()[0]
    rubric = rubric_of(item)
    assessor.score(answer="warm up", rubric=rubric)  # references embedded once
    timings = []
    for response in item["responses"] * 3:
        started = time.perf_counter()
        assessor.score(answer=response["text"], rubric=rubric)
        timings.append(time.perf_counter() - started)
    # The benchmark reports the real figure (target < 50 ms); a shared CI machine gets slack.
    assert statistics.median(timings) < 0.15


def test_keywords_with_synonyms_and_word_boundaries():
    matched, missing = match_keywords("Plants use CO2 and light.", ["carbon dioxide|co2", "sunlight|light", "water"])
    assert matched == ["carbon dioxide", "sunlight"] and missing == ["water"]
    assert match_keywords("delightful", ["light"]) == ([], ["light"])


def test_scoring_rules():
    calibration = AssessmentCalibration()
    full = score_answer(similarity=0.95, matched=["a", "b"], missing=[], calibration=calibration)
    assert full.correctness == 100 and full.understanding_level == "excellent"
    off = score_answer(similarity=0.05, matched=[], missing=["a"], calibration=calibration)
    assert off.correctness == 0 and not off.on_topic and off.understanding_level == "beginning"
    keywords_only = score_answer(similarity=None, matched=["a"], missing=["b"], calibration=calibration)
    assert keywords_only.correctness == 50
    with pytest.raises(DataError):
        Rubric()
    with pytest.raises(ValueError):
        AssessmentCalibration(sim_low=0.9, sim_high=0.1)


def test_assess_through_the_service_gives_feedback(tutor_service):
    from aivo.tutor.schemas import AssessCriteria, AssessRequest, StudentContextIn

    criteria = AssessCriteria(subject="Science", grade="5", learning_objective="Understand photosynthesis",
                              reference_answers=["Plants make food from sunlight, water and carbon dioxide."],
                              rubric_keywords=["sunlight|sun|light", "water", "carbon dioxide|co2"])
    good = tutor_service.assess(AssessRequest(student_response="Plants make food from sunlight", criteria=criteria))
    assert 40 <= good.correctness < 85 and good.feedback_source == "template"
    assert good.matched_keywords == ["sunlight"] and "water and carbon dioxide" in good.areas_for_improvement[0]
    assert good.strengths and "photosynthesis" in good.next_steps
    wrong = tutor_service.assess(AssessRequest(student_response="My dog is brown", criteria=criteria,
                                               context=StudentContextIn(disability="anxiety")))
    assert wrong.correctness == 0 and not wrong.on_topic and wrong.feedback.startswith("Great question!")


def test_llm_feedback_when_enabled(tutor_settings):
    from aivo.tutor.schemas import AssessCriteria, AssessRequest
    from aivo.tutor.service import TutorService

    service = TutorService(settings=tutor_settings.model_copy(update={"tutor_llm_feedback": "on"}))
    try:
        result = service.assess(AssessRequest(student_response="Plants eat sunlight", criteria=AssessCriteria(
            reference_answers=["Plants make food from sunlight."], rubric_keywords=["sunlight"])))
        assert result.feedback_source == "llm" and result.feedback
        assert service.batcher.stats.rows == 1
    finally:
        service.close()
