"""Student-aware prompting: the learner's context becomes the system prompt.

The context is grade, subject, learning style and accommodations. The system prompt asks
for language at the learner's grade and lists each accommodation's instructions; the answer
is then shaped by `accommodations.shape_response` so the layout holds even for a weak model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from aivo.errors import DataError
from aivo.tutor.accommodations import (accommodation_instructions, needs_plain_language,
                                       resolve_accommodations)

LEARNING_STYLES: dict[str, str] = {
    "visual": "Describe a picture, diagram or chart in words, and use spatial words (above, next to).",
    "auditory": "Write the way you would say it out loud, with rhythm and a short phrase to remember.",
    "reading_writing": "Use clear written definitions and suggest a short note the learner can write.",
    "kinesthetic": "Connect the idea to something the learner can do, build or act out with their hands.",
}
_STYLE_ALIASES = {"reading": "reading_writing", "read_write": "reading_writing",
                  "reading/writing": "reading_writing", "hands_on": "kinesthetic",
                  "tactile": "kinesthetic", "aural": "auditory"}

_GRADE_WORDS = {"k": 0, "kg": 0, "kindergarten": 0, "pre_k": 0, "prek": 0}


def parse_grade(value: str | int) -> int:
    """A K-12 grade as 0..12. Accepts 5, "5", "5th", "grade 5", "K", "kindergarten"."""
    if isinstance(value, bool):
        raise DataError(f"grade must be K or 1-12, got {value!r}")
    if isinstance(value, int):
        grade = value
    else:
        text = value.strip().lower().replace("-", "_").replace(" ", "_")
        text = re.sub(r"^grade_?", "", text)
        if text in _GRADE_WORDS:
            return 0
        match = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?(?:_grade)?", text)
        if not match:
            raise DataError(f"grade must be K or 1-12, got {value!r}")
        grade = int(match.group(1))
    if not 0 <= grade <= 12:
        raise DataError(f"grade must be K or 1-12, got {value!r}")
    return grade


def grade_label(grade: int) -> str:
    return "kindergarten" if grade == 0 else f"grade {grade}"


def normalize_learning_style(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    key = value.strip().lower().replace("-", "_").replace(" ", "_")
    key = _STYLE_ALIASES.get(key, key)
    if key not in LEARNING_STYLES:
        raise DataError(f"unknown learning style {value!r}; known: {', '.join(LEARNING_STYLES)}")
    return key


@dataclass(frozen=True)
class StudentContext:
    """Who the tutor is talking to. `accommodations` holds canonical names (see accommodations)."""

    grade: int = 5
    subject: str | None = None
    learning_style: str | None = None
    accommodations: tuple[str, ...] = field(default_factory=tuple)
    student_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.grade, int) or not 0 <= self.grade <= 12:
            raise DataError(f"grade must be 0 (K) to 12, got {self.grade!r}")
        object.__setattr__(self, "learning_style", normalize_learning_style(self.learning_style))
        object.__setattr__(self, "accommodations", resolve_accommodations(self.accommodations))

    @classmethod
    def build(cls, *, grade: str | int = 5, subject: str | None = None,
              learning_style: str | None = None, accommodations: Sequence[str] = (),
              student_id: str | None = None) -> "StudentContext":
        return cls(grade=parse_grade(grade), subject=subject.strip() if subject else None,
                   learning_style=learning_style, accommodations=tuple(accommodations),
                   student_id=student_id)

    @property
    def plain_language(self) -> bool:
        return needs_plain_language(self.accommodations)


def build_system_prompt(context: StudentContext) -> str:
    """The tutor's system prompt for this learner."""
    lines = [
        "You are AIVO, a patient and kind K-12 tutor.",
        f"The learner is in {grade_label(context.grade)}. Use words and sentences that a "
        f"{grade_label(context.grade)} learner can read on their own.",
        "Explain step by step, check understanding, and never give unsafe or adult content.",
        "Never ask for personal information such as a full name, address, phone number or photos.",
    ]
    if context.subject:
        lines.append(f"The subject is {context.subject}.")
    if context.learning_style:
        lines.append(f"Learning style ({context.learning_style.replace('_', '/')}): "
                     f"{LEARNING_STYLES[context.learning_style]}")
    instructions = accommodation_instructions(context.accommodations)
    if instructions:
        lines.append("Accommodations: " + " ".join(instructions))
    return "\n".join(lines)


def build_messages(*, context: StudentContext, prompt: str,
                   history: Sequence[dict[str, str]] = ()) -> list[dict[str, str]]:
    """Chat messages: the student-aware system prompt, earlier turns, then the new prompt."""
    messages = [{"role": "system", "content": build_system_prompt(context)}]
    messages.extend({"role": m["role"], "content": m["content"]} for m in history
                    if m["role"] in ("user", "assistant"))
    messages.append({"role": "user", "content": prompt})
    return messages
