import pytest

from aivo.tutor.readability import (count_syllables, flesch_kincaid_grade, grade_band, readability_report,
                                    split_sentences)

KNOWN_SYLLABLES = {
    "cat": 1, "plant": 1, "water": 2, "table": 2, "sunlight": 2, "little": 2, "because": 2, "happy": 2,
    "nation": 2, "language": 2, "social": 2, "fraction": 2, "jumped": 1, "wanted": 2, "boxes": 2, "pages": 2,
    "animal": 3, "elephant": 3, "division": 3, "radio": 3, "period": 3, "butterfly": 3, "government": 3,
    "gravity": 3, "variable": 4, "ecosystem": 4, "community": 4, "perimeter": 4, "caterpillar": 4,
    "photosynthesis": 5, "multiplication": 5, "precipitation": 5, "denominator": 5, "ocean": 2, "medium": 3,
}


def test_syllable_counter_is_right_on_common_school_words():
    wrong = {w: count_syllables(w) for w, n in KNOWN_SYLLABLES.items() if count_syllables(w) != n}
    assert not wrong


def test_syllables_edge_cases():
    assert count_syllables("") == 0
    assert count_syllables("I") == 1
    assert count_syllables("Photosynthesis!") == 5


def test_fk_grade_matches_the_formula_by_hand():
    text = "The cat sat on the mat. It was a happy cat."
    # 11 words, 2 sentences, 12 syllables ("happy" has two)
    expected = 0.39 * 11 / 2 + 11.8 * 12 / 11 - 15.59
    assert flesch_kincaid_grade(text) == pytest.approx(expected)


def test_harder_text_scores_a_higher_grade():
    easy = "Plants need light. They make food. The sun helps them grow."
    hard = ("Photosynthesis is the biochemical process whereby chlorophyll-containing organisms "
            "transform electromagnetic radiation into chemical energy, synthesizing carbohydrates.")
    assert flesch_kincaid_grade(hard) > flesch_kincaid_grade(easy) + 8


def test_sentences_ignore_decimals_and_list_markers():
    assert split_sentences("1. Add 3.5 and 2. 2. Then stop!") == ["Add 3.5 and 2.", "Then stop!"]


def test_report_against_the_band():
    report = readability_report("The cat sat on the mat. It was a happy cat.", grade=3)
    assert report.words == 11 and report.sentences == 2 and report.target_grade == 3
    assert (report.band_low, report.band_high) == grade_band(3)
    assert report.within_band
    hard = readability_report("Photosynthesis is the biochemical process whereby chlorophyll-containing "
                              "organisms transform electromagnetic radiation.", grade=3)
    assert not hard.within_band and hard.fk_grade > hard.band_high
    assert not readability_report("", grade=3).within_band


def test_plain_language_lowers_the_top_of_the_band():
    assert grade_band(6, plain_language=True)[1] < grade_band(6)[1]
