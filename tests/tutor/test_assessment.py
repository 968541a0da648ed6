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
    # keyword-stuffed wrong answers (label "adversarial") score as wrong with the rubrics' misconceptions
    assert report.adversarial_scored_wrong == 1.0 and report.mean_score_by_label["adversarial"] < 40


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
    # feedback on an answer is not an answer to a question: no "Great question!" opener (anxiety)
    assert wrong.correctness == 0 and not wrong.on_topic and not wrong.feedback.startswith("Great question")
    assert "food?." not in wrong.model_dump_json()


def test_keyword_stuffing_scores_as_wrong(tutor_service):
    """The issue's example: a wrong answer that lists the rubric words."""
    from aivo.tutor.schemas import AssessCriteria, AssessRequest

    criteria = AssessCriteria(question="How do plants make food?",
                              reference_answers=["Plants use sunlight, water and carbon dioxide to make sugar."],
                              rubric_keywords=["sunlight|light", "water", "carbon dioxide|co2"],
                              misconceptions=["breathe in oxygen", "evaporate", "from the soil"])
    stuffed = ("Plants breathe in oxygen... sunlight makes the water evaporate from the sugar, and carbon dioxide "
               "comes out")
    result = tutor_service.assess(AssessRequest(student_response=stuffed, criteria=criteria))
    assert result.correctness < 40 and result.understanding_level == "beginning"
    assert result.misconceptions == ["breathe in oxygen", "evaporate"]
    assert any("common mix-up" in area for area in result.areas_for_improvement)
    right = tutor_service.assess(AssessRequest(
        student_response="Plants use light, water and carbon dioxide to make sugar, not food from the soil.",
        criteria=criteria))
    assert right.correctness >= 85 and right.misconceptions == []  # a negated misconception is fine


def test_negated_keywords_do_not_count():
    from aivo.tutor.assessment import match_keywords

    assert match_keywords("It is not five sixths", ["five sixths|5/6"]) == ([], ["five sixths"])
    assert match_keywords("They don't make laws", ["make laws"]) == ([], ["make laws"])
    assert match_keywords("The answer is five sixths", ["five sixths"]) == (["five sixths"], [])


def test_llm_feedback_when_enabled(tutor_settings):
    from aivo.tutor.schemas import AssessCriteria, AssessRequest
    from aivo.services.tutor import TutorService

    service = TutorService(settings=tutor_settings.model_copy(update={"tutor_llm_feedback": "on"}))
    try:
        result = service.assess(AssessRequest(student_response="Plants eat sunlight", criteria=AssessCriteria(
            reference_answers=["Plants make food from sunlight."], rubric_keywords=["sunlight"])))
        assert result.feedback_source == "llm" and result.feedback
        assert service.batcher.stats.rows == 1
    finally:
        service.close()
