import pytest

from aivo.errors import DataError
from aivo.tutor.accommodations import (Accommodation, known_accommodations, register_accommodation,
                                       resolve_accommodations, shape_response)
from aivo.tutor.prompting import StudentContext, build_messages, build_system_prompt, parse_grade
from aivo.tutor.readability import split_sentences

TEXT = ("Photosynthesis is how plants make their own food, and they need it to grow in the forest and in "
        "the field. Leaves take in sunlight! Roots take in water from the soil. The plant obviously uses "
        "the energy of sunlight to turn water and carbon dioxide into sugar. It is a piece of cake.")


def test_no_accommodation_leaves_text_alone():
    assert shape_response(TEXT, []) == TEXT


def test_adhd_numbered_steps_in_short_chunks():
    out = shape_response(TEXT, ["ADHD"])
    lines = [line for line in out.splitlines() if line.strip()]
    assert [line.split(".")[0] for line in lines] == [str(i) for i in range(1, len(lines) + 1)]
    assert "\n\n4. " in out  # a new chunk after three steps
    # the long first sentence is split at its clause joint into two steps
    assert lines[:2] == ["1. Photosynthesis is how plants make their own food.",
                         "2. They need it to grow in the forest and in the field."]


def test_dyslexia_short_sentences_plain_words():
    out = shape_response("We utilize approximately sufficient water, and the plant grows tall and green "
                         "in the warm spring sun.", ["dyslexia"])
    assert "utilize" not in out and "use" in out and "about" in out
    assert all(len(s.split()) <= 12 for s in split_sentences(out))


def test_autism_literal_and_structured():
    out = shape_response(TEXT, ["autism"])
    assert out.startswith("Main idea: Photosynthesis")
    assert "\n\nDetails:\n- " in out
    assert "piece of cake" not in out and "!" not in out


def test_anxiety_encouraging_low_pressure():
    out = shape_response(TEXT, ["anxious"])
    assert out.startswith("Great question!") and out.endswith("try a different way.")
    assert "obviously" not in out


def test_combined_order_does_not_matter():
    assert shape_response(TEXT, ["anxiety", "adhd", "autism"]) == shape_response(TEXT, ["autism", "anxiety", "adhd"])
    combined = shape_response(TEXT, ["adhd", "autism"])
    assert combined.startswith("Main idea:") and "\n1. " in combined


def test_registry_rejects_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        register_accommodation(Accommodation(name="adhd", aliases=(), instructions=()))
    with pytest.raises(DataError, match="unknown accommodation"):
        resolve_accommodations(["telepathy"])
    assert resolve_accommodations(["none", "", "ASD", "autism"]) == ("autism",)
    assert set(known_accommodations()) >= {"adhd", "dyslexia", "autism", "anxiety"}


@pytest.mark.parametrize("value,grade", [("K", 0), ("kindergarten", 0), ("5", 5), ("5th", 5),
                                         ("Grade 7", 7), (12, 12)])
def test_parse_grade(value, grade):
    assert parse_grade(value) == grade


@pytest.mark.parametrize("value", ["13", "fifth", -1, "", True])
def test_parse_grade_rejects(value):
    with pytest.raises(DataError):
        parse_grade(value)


def test_system_prompt_follows_the_context():
    context = StudentContext.build(grade="3", subject="Math", learning_style="hands-on",
                                   accommodations=["dyslexia", "adhd"])
    prompt = build_system_prompt(context)
    assert "grade 3" in prompt and "The subject is Math." in prompt
    assert "kinesthetic" in prompt and "numbered steps" in prompt and "plain, common words" in prompt
    assert "personal information" in prompt
    messages = build_messages(context=context, prompt="What is 3 x 4?",
                              history=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    with pytest.raises(DataError, match="learning style"):
        StudentContext.build(learning_style="psychic")


def test_autism_layout_written_by_the_model_is_not_doubled():
    model_text = "Main idea: Plants make food.\n\nDetails:\n- They use light.\n- They use water."
    shaped = shape_response(model_text, ["autism"])
    assert shaped.count("Main idea:") == 1 and shaped.count("Details:") == 1
    assert shaped.startswith("Main idea: Plants make food.") and "- They use light." in shaped
    assert shape_response(shaped, ["autism"]) == shaped  # idempotent
    both = shape_response("**Main idea:** Cells are small. Details: They make up living things.", ["autism", "adhd"])
    assert both.count("Main idea:") == 1 and "Details:\n1. They make up living things." in both


def test_questions_keep_their_own_punctuation():
    assert "food?." not in shape_response("Answer the question: How do plants make food?", ["adhd"])
    assert shape_response("Is it food?!", ["dyslexia"]) == "Is it food?"


def test_frame_false_leaves_out_openers_and_closers():
    text = shape_response("You are close. Add water.", ["anxiety"], frame=False)
    assert not text.startswith("Great question") and "Take your time" not in text


def test_long_sentences_without_clause_joints_are_split_to_the_limits_keeping_every_word():
    """Lesson sentences quoted in grounded answers are often long with no ", and" joint: they are
    split to the dyslexia (12) and ADHD (15) limits, words kept in order (the facts do not change)."""
    import re

    quote = ("A triangle is a flat shape with three straight sides and three corners. Plants use the energy "
             "of sunlight to turn water and carbon dioxide into glucose, which stores energy for the plant "
             "to use later. The water cycle is the continuous movement of water between the oceans the "
             "atmosphere and the land surfaces of planet Earth today.")
    words = lambda text: [w.lower() for w in re.findall(r"[A-Za-z]+", text)]  # noqa: E731
    dyslexia = shape_response(quote, ["dyslexia"])
    assert all(len(s.split()) <= 12 for s in split_sentences(dyslexia)), dyslexia
    assert words(dyslexia) == [w if w != "which" else "this" for w in words(quote)]
    adhd = shape_response(quote, ["adhd"])
    steps = [line.split(". ", 1)[1] for line in adhd.splitlines() if line.strip()]
    assert all(len(s.split()) <= 15 for s in steps) and len(steps) >= 4
    assert words(" ".join(steps)) == [w if w != "which" else "this" for w in words(quote)]
    assert shape_response("Short and fine.", ["dyslexia"]) == "Short and fine."


def test_a_bound_to_is_not_split_off():
    shaped = shape_response("The plates of the crust move slowly over time due to convection currents in the "
                            "hot mantle below them.", ["dyslexia"])
    assert "due to convection" in shaped and all(len(s.split()) <= 12 for s in split_sentences(shaped))
