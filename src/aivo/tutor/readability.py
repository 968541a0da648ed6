"""Readability: Flesch-Kincaid grade level with an offline syllable counter.

FK grade = 0.39 * (words / sentences) + 11.8 * (syllables / words) - 15.59
(Kincaid et al., 1975). Syllables are counted with vowel-group rules plus a small table of
common exceptions; the rules are right for about nine English words in ten, which is enough
for a grade-level estimate (FK itself is only meaningful to about +-1 grade).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
# A sentence ends at . ! ? (or a line break) followed by whitespace; "3.5" is not a boundary.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_LIST_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s+")

# Words the vowel-group rules get wrong, with their syllable counts.
_SYLLABLE_EXCEPTIONS = {
    "beautiful": 3, "every": 3, "different": 3, "family": 3, "business": 2, "people": 2,
    "science": 2, "create": 2, "created": 3, "idea": 3, "ideas": 3, "area": 3, "areas": 3,
    "video": 3, "radio": 3, "piano": 3, "lion": 2, "poem": 2, "quiet": 2, "being": 2,
    "science's": 2, "fire": 1, "hour": 1, "our": 1, "eye": 1, "eyes": 1, "one": 1, "once": 1,
    "done": 1, "gone": 1, "none": 1, "some": 1, "come": 1, "give": 1, "live": 1, "have": 1,
    "were": 1, "where": 1, "there": 1, "here": 1, "whole": 1, "whose": 1, "house": 1,
    "cooperate": 4, "equation": 3, "equations": 3, "triangle": 3, "triangles": 3,
    "denominator": 5, "numerator": 4, "evaporates": 4, "evaporate": 4, "carbon": 2,
    "dioxide": 3, "oxygen": 3, "energy": 3, "anxiety": 4, "society": 4, "variety": 4,
    "really": 2, "usually": 4, "actually": 4, "naturally": 4, "interesting": 3,
    "vegetable": 4, "reaction": 3, "reactions": 3, "react": 2, "molecule": 3, "molecules": 3, "chocolate": 2, "temperature": 4, "camera": 3, "several": 3,
}


def count_syllables(word: str) -> int:
    """Syllables in one English word (at least 1 for any word with a letter)."""
    w = re.sub(r"[^a-z']", "", word.lower())
    if not w:
        return 0
    if w in _SYLLABLE_EXCEPTIONS:
        return _SYLLABLE_EXCEPTIONS[w]
    w = w.replace("'", "")
    if len(w) <= 3:
        return 1
    if w.endswith("es") and w[-3:-2] in ("c", "g", "s", "x", "z") or w.endswith(("ches", "shes")):
        base = count_syllables(w[:-2])  # boxes, pages, wishes: the -es is its own syllable
        return base + 1
    if w.endswith("ed") and w[-3:-2] in ("t", "d"):
        return count_syllables(w[:-2]) + 1  # wanted, needed
    stem = re.sub(r"(?:[^laeiouy]es|[^laeiouy]ed|[^laeiouy]e)$", lambda m: m.group(0)[0], w)
    stem = re.sub(r"^y", "", stem)
    count = len(re.findall(r"[aeiouy]+", stem))
    # -ia, -io, -eo, -ua pairs are usually two syllables (radio, video, actual)
    # (but not -tion/-sion, -cial/-tial, or qu/gu: nation, social, language)
    count += len(re.findall(r"(?:(?<![ct])ia|io(?!ns?$)|eo|(?<![qg])ua|uo|iu)", stem))
    return max(1, count)


def split_sentences(text: str) -> list[str]:
    """Sentences (and list items) of `text`, stripped, list markers removed."""
    parts = (p.strip() for p in _SENTENCE_END.split(text))
    return [_LIST_MARKER.sub("", p).strip() for p in parts if p and _WORD.search(p)]


def words_of(text: str) -> list[str]:
    return _WORD.findall(text)


def flesch_kincaid_grade(text: str) -> float:
    """FK grade of `text`; 0.0 for text without words. Not clipped (very easy text goes below 0)."""
    sentences = split_sentences(text)
    words = words_of(text)
    if not words or not sentences:
        return 0.0
    syllables = sum(count_syllables(w) for w in words)
    return 0.39 * len(words) / len(sentences) + 11.8 * syllables / len(words) - 15.59


def grade_band(grade: int, *, plain_language: bool = False) -> tuple[float, float]:
    """The FK range that suits a learner in `grade` (0 = kindergarten).

    Text may be easier than the learner's grade (accessible writing is a goal), but not far
    easier, and at most one grade harder. Plain-language accommodations (dyslexia) lower the top.
    """
    high = grade + (-1.0 if plain_language else 1.0)
    low = grade - 4.0
    return (max(-3.0, low), max(1.0, high))


@dataclass(frozen=True)
class ReadabilityReport:
    fk_grade: float
    target_grade: int
    band_low: float
    band_high: float
    within_band: bool
    words: int
    sentences: int
    syllables: int

    def to_dict(self) -> dict:
        return asdict(self)


def readability_report(text: str, *, grade: int, plain_language: bool = False) -> ReadabilityReport:
    """FK grade of `text` measured against the band for a learner in `grade`."""
    words = words_of(text)
    sentences = split_sentences(text)
    syllables = sum(count_syllables(w) for w in words)
    fk = round(flesch_kincaid_grade(text), 2)
    low, high = grade_band(grade, plain_language=plain_language)
    return ReadabilityReport(fk_grade=fk, target_grade=grade, band_low=low, band_high=high,
                             within_band=bool(words) and low <= fk <= high, words=len(words),
                             sentences=len(sentences), syllables=syllables)
