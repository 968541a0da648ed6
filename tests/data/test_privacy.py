"""Pseudonymization and PII scrubbing, with the tricky cases: no false positives on scores,
years, dates and ids; names inside other words are left alone."""

import hashlib
import hmac

import pandas as pd
import pytest

from aivo.config import Settings
from aivo.data.privacy import (
    load_pii_names,
    pseudonymize_frame,
    pseudonymize_learner_id,
    pseudonymize_learner_ids,
    scrub_frame,
    scrub_pii,
)
from aivo.errors import ConfigError, DataError

KEY = b"0123456789abcdef0123456789abcdef"
NAMES = ("Maria Lopez", "Maria", "Ann", "José", "O'Brien", "Sam")


def test_pseudonym_is_keyed_hmac_sha256_and_stable():
    expected = hmac.new(KEY, b"student-42", hashlib.sha256).hexdigest()
    assert pseudonymize_learner_id("student-42", key=KEY) == expected
    assert pseudonymize_learner_id(" student-42 ", key=KEY) == expected  # trimmed
    assert len(expected) == 64 and all(c in "0123456789abcdef" for c in expected)
    assert pseudonymize_learner_id("student-42", key=b"another key......") != expected
    assert pseudonymize_learner_id(42, key=KEY) == pseudonymize_learner_id("42", key=KEY)
    # NFC: the two spellings of "José" are one learner
    assert pseudonymize_learner_id("Jose\u0301", key=KEY) == pseudonymize_learner_id("Jos\u00e9", key=KEY)


def test_pseudonym_with_the_settings_key(tmp_path):
    settings = Settings(home=tmp_path / "home")
    key = settings.resolved_secret_key()
    assert pseudonymize_learner_id("a", key=key) == pseudonymize_learner_id("a", key=settings.resolved_secret_key())


def test_pseudonym_input_checks():
    with pytest.raises(ConfigError, match="empty"):
        pseudonymize_learner_id("a", key=b"")
    with pytest.raises(TypeError, match="bytes"):
        pseudonymize_learner_id("a", key="text-key")
    with pytest.raises(DataError, match="empty learner id"):
        pseudonymize_learner_id("  ", key=KEY)


def test_pseudonymize_many_and_frames():
    ids = ["a", "b", "a"]
    out = pseudonymize_learner_ids(ids, key=KEY)
    assert out[0] == out[2] != out[1]
    frame = pd.DataFrame({"learner_id": ids, "correct": [1, 0, 1]})
    masked = pseudonymize_frame(frame, key=KEY)
    assert masked["learner_id"].tolist() == out and frame["learner_id"].tolist() == ids
    with pytest.raises(DataError, match="no column 'student'"):
        pseudonymize_frame(frame, key=KEY, column="student")


@pytest.mark.parametrize("text,expected", [
    ("mail maria.lopez+hw@school.k12.ca.us now", "mail [EMAIL] now"),
    ("Contact: SAM_99@Example.ORG.", "Contact: [EMAIL]."),
    ("call (555) 123-4567 or 555.123.4567", "call [PHONE] or [PHONE]"),
    ("dad: 555-123-4567, mom: +1 555 123 4567", "dad: [PHONE], mom: [PHONE]"),
    ("UK +44 20 7946 0958, FR +33 1 23 45 67 89", "UK [PHONE], FR [PHONE]"),
    ("DE +49 30 1234567 and IN +919876543210", "DE [PHONE] and IN [PHONE]"),
    ("London office 020 7946 0958", "London office [PHONE]"),
    ("1-800-555-1234 toll free", "[PHONE] toll free"),
])
def test_emails_and_phones_are_redacted(text, expected):
    assert scrub_pii(text) == expected


@pytest.mark.parametrize("text", [
    "Score 95/100 in 2024, up from 87 in 2023.",
    "Born 2011-04-15, tested 15.04.2024 at 10:30.",
    "Student id 1234567890 and item 4711; attempt 3 of 12.",
    "Pages 120-1350, ratio 3.14159, 1,000,000 points, -12.5 degrees.",
    "Grades 3-5 math, years 1999-2003, version 2.10.3.",
    "The price was $1,234.56 and +5 bonus (x2).",
    "Map ref 51.5074, -0.1278; ISBN-13 9783161484100",
    "a@b is not an address, nor is user@localhost",
])
def test_no_false_positives_on_numbers_and_near_misses(text):
    assert scrub_pii(text, names=NAMES) == text


def test_names_case_insensitive_whole_words_longest_first():
    text = "maria lopez and MARIA met Ann; Anna, Joanne and annual reports stay. José's pen, O'Brien too."
    assert scrub_pii(text, names=NAMES) == (
        "[NAME] and [NAME] met [NAME]; Anna, Joanne and annual reports stay. [NAME]'s pen, [NAME] too.")


def test_names_spanning_line_breaks_and_samples():
    assert scrub_pii("Dear Maria\nLopez,", names=NAMES) == "Dear [NAME],"
    assert scrub_pii("Sample, Samuel, Sam.", names=NAMES) == "Sample, Samuel, [NAME]."


def test_name_inside_an_email_goes_with_the_email():
    assert scrub_pii("write to maria@school.org, Maria", names=NAMES) == "write to [EMAIL], [NAME]"


def test_names_from_a_spec_or_file(tmp_path):
    assert load_pii_names(" Maria Lopez ,  sam,, ") == ("Maria Lopez", "sam")
    assert load_pii_names("Sam, SAM") == ("Sam",)
    path = tmp_path / "names.txt"
    path.write_text("# roster\nMaria Lopez\nSam, Ann\n\n", encoding="utf-8")
    assert load_pii_names(f"@{path}") == ("Maria Lopez", "Sam", "Ann")
    assert scrub_pii("Hi Ann", names=f"@{path}") == "Hi [NAME]"
    with pytest.raises(ConfigError, match="cannot read the names file"):
        load_pii_names(f"@{tmp_path / 'missing.txt'}")
    with pytest.raises(ConfigError, match="too short"):
        load_pii_names("A, Sam")
    assert load_pii_names("") == ()


def test_scrub_frame_only_touches_free_text():
    frame = pd.DataFrame({
        "learner_id": ["Maria", "Sam"],
        "item_id": ["q1", "q2"],
        "correct": [1, 0],
        "answer_text": ["I am Maria, 555-123-4567", None],
        "feedback": pd.array(["ok", "email sam@x.org"], dtype="string"),
    })
    out = scrub_frame(frame, names=["Maria", "Sam"])
    assert out["answer_text"].tolist()[0] == "I am [NAME], [PHONE]"
    assert pd.isna(out["answer_text"].iloc[1])
    assert out["feedback"].tolist() == ["ok", "email [EMAIL]"]
    assert out["learner_id"].tolist() == ["Maria", "Sam"]  # ids are pseudonymized, not scrubbed
    assert frame["answer_text"].iloc[0] == "I am Maria, 555-123-4567"  # input untouched
    only = scrub_frame(frame, names=["Sam"], columns=["feedback"])
    assert only["answer_text"].iloc[0] == "I am Maria, 555-123-4567"
    with pytest.raises(DataError, match="missing column"):
        scrub_frame(frame, columns=["notes"])
