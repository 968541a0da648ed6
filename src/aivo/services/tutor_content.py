"""The school's content library for the CLI and the API: import, list, search, clear.

The library itself (passages, embeddings, search) is aivo.tutor.content; the tutor service
retrieves from the same folder (`AIVO_HOME/tutor/content`)."""

from __future__ import annotations

from pathlib import Path

from aivo.config import Settings
from aivo.tutor.content import ContentLibrary, Hit, ImportReport
from aivo.tutor.prompting import parse_grade


def content_library(settings: Settings) -> ContentLibrary:
    return ContentLibrary(settings.home / "tutor" / "content")


def import_lessons(*, settings: Settings, path: Path, progress=None) -> ImportReport:
    return content_library(settings).import_file(path, progress=progress)


def list_lessons(*, settings: Settings) -> list[dict]:
    return content_library(settings).lessons()


def search_lessons(*, settings: Settings, query: str, grade: str | None = None, subject: str | None = None,
                   k: int = 3) -> list[Hit]:
    return content_library(settings).search(query, grade=parse_grade(grade) if grade else None, subject=subject,
                                            k=k, min_score=settings.tutor_content_min_score)


def clear_lessons(*, settings: Settings) -> int:
    return content_library(settings).clear()
