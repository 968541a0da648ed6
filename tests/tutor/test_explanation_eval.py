"""The explanation evaluation set and its measures (the model run itself is a benchmark)."""

from __future__ import annotations

from collections import Counter

from aivo.tutor.accommodations import shape_response
from aivo.tutor.explanation_eval import complies, contradiction_stated, fact_stated, load_explanation_set


def test_the_set_covers_subjects_and_grades_1_to_12():
    items = load_explanation_set()
    assert len(items) >= 100 and len({i["id"] for i in items}) == len(items)
    assert {i["grade"] for i in items} == set(range(1, 13))
    assert len(Counter(i["subject"] for i in items)) >= 4
    assert all(i["key_facts"] for i in items)
    assert {i["accommodation"] for i in items} == {None, "adhd", "dyslexia", "autism", "anxiety"}


def test_key_facts_match_word_prefixes_and_alternatives():
    answer = "Water evaporates, then condenses into clouds; rain falls."
    assert fact_stated(answer, "evaporat") and fact_stated(answer, "condens|cloud")
    assert fact_stated(answer, "precipitation|rain") and not fact_stated(answer, "snow|hail")
    assert not fact_stated("a rainbow", "bow")  # a prefix of a word, not a piece of one
    assert contradiction_stated("Some think the sun goes around the Earth.", "sun goes around the earth")


def test_a_negated_misconception_is_not_stated():
    """The lessons state the reference by negating the misconception; that is not a contradiction."""
    assert not contradiction_stated("Then add the numerators. Never add the denominators together.",
                                    "add the denominators")
    assert not contradiction_stated("They have the same shape but not necessarily the same size.", "same size")
    assert not contradiction_stated("You don't add the denominators.", "add the denominators")
    assert contradiction_stated("No. First add the denominators, then the numerators.", "add the denominators")
    assert contradiction_stated("Similar triangles are the same size.", "same size")


def test_compliance_follows_the_shaping_rules():
    text = ("Photosynthesis is how plants make food, and it needs light. Leaves catch sunlight. "
            "Roots take up water. Plants make sugar. They give off oxygen.")
    for accommodation in ("adhd", "autism", "anxiety"):
        assert complies(shape_response(text, [accommodation]), accommodation), accommodation
    assert not complies(text, "adhd") and not complies(text, "autism") and complies(text, None) is None
    assert not complies("Main idea: Main idea: x", "autism")
    long_sentence = "This single sentence has many more than twelve words in it without any place to split it."
    assert not complies(long_sentence, "dyslexia") and complies("Short one. Another short one.", "dyslexia")
