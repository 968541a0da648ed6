"""The content library: parsing, passages, atomic storage, search, and grounding in generation."""

from __future__ import annotations

import json

import pytest

from aivo.errors import DataError
from aivo.tutor.content import ContentLibrary, parse_markdown, read_lessons, source_note, split_passages
from aivo.tutor.schemas import GenerateRequest, StudentContextIn

LESSONS = """# Photosynthesis
subject: Science
grade: 5
skill: photosynthesis

Plants make their own food in their leaves. They use sunlight, water and carbon dioxide to make sugar.

# The water cycle
subject: Science
grade: 3
skill: water cycle

Water evaporates, condenses into clouds and falls as rain.
"""


def test_markdown_lessons_parse_with_metadata_and_errors(tmp_path):
    lessons = parse_markdown(LESSONS, name="l.md")
    assert [(x.title, x.grade, x.skill) for x in lessons] == [("Photosynthesis", 5, "photosynthesis"),
                                                            ("The water cycle", 3, "water cycle")]
    with pytest.raises(DataError, match="needs subject"):
        parse_markdown("# Title\ngrade: 3\nskill: s\n\ntext", name="l.md")
    with pytest.raises(DataError, match="before the first"):
        parse_markdown("stray text\n# Title", name="l.md")
    dup = tmp_path / "dup.jsonl"
    row = {"id": "a", "title": "t", "subject": "s", "grade": "K", "skill": "k", "text": "x"}
    dup.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match="more than once"):
        read_lessons(dup)
    binary = tmp_path / "b.md"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="not UTF-8"):
        read_lessons(binary)


def test_long_lessons_split_into_passages():
    text = " ".join(f"Sentence number {i} says one more thing about the topic." for i in range(40))
    lesson = parse_markdown(f"# Long\nsubject: S\ngrade: 4\nskill: k\n\n{text}", name="x")[0]
    passages = split_passages(lesson)
    assert len(passages) >= 4 and all(len(p.text.split()) <= 100 for p in passages)
    assert " ".join(p.text for p in passages) == text


def test_library_search_prefers_the_learners_grade_and_survives_reimport(tmp_path):
    path = tmp_path / "lessons.md"
    path.write_text(LESSONS)
    library = ContentLibrary(tmp_path / "content")
    assert library.is_empty() and library.search("anything") == []
    report = library.import_file(path)
    assert (report.lessons, report.replaced, report.library_lessons) == (2, 0, 2)
    hits = library.search("How do plants make food?", grade=5, k=2, min_score=0.3)
    assert hits[0].passage.title == "Photosynthesis" and len({h.passage.lesson_id for h in hits}) == len(hits)
    assert library.import_file(path).replaced == 2 and len(library.lessons()) == 2
    other = ContentLibrary(tmp_path / "content")  # another process sees the same library
    assert len(other.lessons()) == 2
    assert "Photosynthesis" in source_note(hits[:1]) and "model alone" in source_note([])


def test_generation_is_grounded_and_names_its_sources(tutor_service, tmp_path):
    prompt = "How do plants make their own food?"
    ungrounded = tutor_service.generate(GenerateRequest(prompt=prompt, max_new_tokens=8, temperature=0))
    assert not ungrounded.grounded and ungrounded.sources == [] and "model alone" in ungrounded.response
    path = tmp_path / "lessons.md"
    path.write_text(LESSONS)
    tutor_service.content.import_file(path)
    grounded = tutor_service.generate(GenerateRequest(prompt=prompt, max_new_tokens=8, temperature=0,
                                                      context=StudentContextIn(grade="5")))
    assert grounded.grounded and grounded.sources[0].title == "Photosynthesis"
    assert grounded.response.endswith(grounded.source_note) and "Photosynthesis" in grounded.source_note
    assert grounded.usage.prompt_tokens > ungrounded.usage.prompt_tokens  # the passage is in the prompt
    assert grounded.explanation and grounded.source_note not in grounded.explanation
    # the answer opens with the lesson's own sentences (AIVO_TUTOR_CONTENT_QUOTE, default 2)
    assert grounded.explanation.startswith("Plants make their own food in their leaves. They use sunlight")
    assert not ungrounded.explanation.startswith("Plants make their own food in their leaves")


def test_quote_picks_the_sentences_closest_to_the_question_in_lesson_order(tmp_path):
    path = tmp_path / "lessons.md"
    path.write_text("# Volcanoes\nsubject: Science\ngrade: 6\nskill: volcanoes\n\nThe Earth has layers. "
                    "A volcano is an opening in the crust. Melted rock called magma rises through it. "
                    "Many people like to hike in the mountains. Lava is magma that reaches the surface.\n")
    library = ContentLibrary(tmp_path / "content")
    library.import_file(path)
    hits = library.search("What comes out of a volcano when it erupts?", grade=6, k=1)
    quote = library.quote("What comes out of a volcano when it erupts?", hits, sentences=2)
    assert quote.count(".") == 2 and "hike" not in quote
    first, second = quote.split(". ", 1)
    text = hits[0].passage.text
    assert text.index(first) < text.index(second)  # the lesson's order, not the ranking's
    assert library.quote("anything", [], sentences=2) == "" and library.quote("x", hits, sentences=0) == ""


def test_streamed_grounded_answer_sends_the_quote_first(tutor_settings, tmp_path):
    import asyncio

    from aivo.services.tutor import TutorService

    service = TutorService(settings=tutor_settings)
    try:
        path = tmp_path / "lessons.md"
        path.write_text(LESSONS)
        service.content.import_file(path)
        request = GenerateRequest(prompt="How do plants make their own food?", max_new_tokens=6, temperature=0,
                                  context=StudentContextIn(grade="5"))

        async def collect():
            return [event async for event in service.generate_events(request)]

        events = asyncio.run(collect())
    finally:
        service.close()
    tokens = [data for name, data in events if name == "token"]
    assert tokens[0]["token"].startswith("Plants make their own food") and tokens[0]["token_id"] is None
    assert [t["index"] for t in tokens] == sorted(t["index"] for t in tokens)
    done = events[-1][1]
    assert events[-1][0] == "done" and done["explanation"].startswith("Plants make their own food")


def test_grounded_messages_quote_the_passages_where_the_layout_says(tmp_path):
    from aivo.tutor.content import Hit, Passage, grounded_messages

    passage = Passage(passage_id="p#1", lesson_id="p", title="Photosynthesis", subject="Science", grade=5,
                      skill="plants", text="Plants make sugar from light, water and carbon dioxide.")
    hits = [Hit(passage=passage, score=0.8)]
    messages = [{"role": "system", "content": "You are AIVO."}, {"role": "user", "content": "How do plants eat?"}]
    system = grounded_messages(messages, hits, layout="system")
    assert "carbon dioxide" in system[0]["content"] and system[1] == messages[1]
    user = grounded_messages(messages, hits, layout="user")
    assert user[0] == messages[0] and user[1]["content"].endswith("How do plants eat?")
    assert user[1]["content"].index("carbon dioxide") < user[1]["content"].index("How do plants eat?")
    assert messages[1]["content"] == "How do plants eat?"  # the caller's list is not changed
    assert grounded_messages(messages, [], layout="user") == messages
    with pytest.raises(ValueError, match="layout"):
        grounded_messages(messages, hits, layout="sideways")


def test_accommodations_shape_the_quoted_lesson_sentences_too(tutor_service, tmp_path):
    """A grounded answer opens with the lesson's sentences verbatim; for a learner with an
    accommodation they are shaped like the rest (dyslexia: long quoted sentences split to 12
    words, no word changed; ADHD steps; autism layout; anxiety frame)."""
    import re

    from aivo.tutor.explanation_eval import complies

    path = tmp_path / "lessons.md"
    path.write_text("# Triangles\nsubject: Math\ngrade: 2\nskill: shapes\n\nA triangle is a flat shape with three "
                    "straight sides and three corners that meet at three points called vertices. The three "
                    "inside angles of every triangle always add up to one hundred and eighty degrees in total.\n")
    tutor_service.content.import_file(path)
    prompt = "How many sides does a triangle have?"
    lesson_words = re.findall(r"[a-z]+", "a triangle is a flat shape with three straight sides and three corners")
    for accommodation in ("dyslexia", "adhd", "autism", "anxiety"):
        answer = tutor_service.generate(GenerateRequest(
            prompt=prompt, max_new_tokens=8, temperature=0,
            context=StudentContextIn(grade="2", accommodations=[accommodation])))
        assert answer.grounded and complies(answer.explanation, accommodation), (accommodation, answer.explanation)
        assert re.findall(r"[a-z]+", answer.explanation.lower()).count("vertices") == 1
        if accommodation == "dyslexia":
            found = re.findall(r"[a-z]+", answer.explanation.lower())
            assert found[:len(lesson_words)] == lesson_words, answer.explanation
