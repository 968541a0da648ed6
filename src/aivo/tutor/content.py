"""The school's content library: vetted lessons the tutor grounds its explanations in.

`aivo tutor content import FILE` reads lessons (Markdown or JSONL, each with subject, grade
and skill), cuts them into passages of about `PASSAGE_WORDS` words, embeds the passages with
all-MiniLM-L6-v2 (embeddings.py) and stores them under `AIVO_HOME/tutor/content/` (one JSONL
of passages and one .npy matrix of their unit vectors, written atomically). At generation
time `ContentLibrary.search` returns the passages closest to the question for the learner's
grade; the prompt quotes them and the answer names them.

Formats:

- JSONL: one lesson per line, `{"title", "subject", "grade", "skill", "text"}` (`id` optional).
- Markdown: each lesson starts with a `# Title` line, then `key: value` lines for subject,
  grade and skill (and optionally id), a blank line, and the lesson text until the next `# `.

Re-importing a lesson with the same id (default: derived from title, subject and grade)
replaces it; other lessons are kept.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aivo.errors import DataError
from aivo.tutor.embeddings import EMBEDDING_DIM, Embedder, shared_embedder
from aivo.tutor.prompting import grade_label, parse_grade
from aivo.utils import durable_file

log = logging.getLogger(__name__)

PASSAGE_WORDS = 90  # about one paragraph: long enough to carry a fact, short enough to quote three
MAX_LESSON_CHARS = 20_000
MAX_FILE_BYTES = 20 << 20
GRADE_WINDOW = (3, 2)  # a learner in grade g is served lessons of grades g-3 .. g+2 when any match


@dataclass(frozen=True)
class Lesson:
    id: str
    title: str
    subject: str
    grade: int
    skill: str
    text: str


@dataclass(frozen=True)
class Passage:
    passage_id: str  # "<lesson id>#<n>"
    lesson_id: str
    title: str
    subject: str
    grade: int
    skill: str
    text: str


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float  # cosine similarity to the question

    def label(self) -> str:
        p = self.passage
        return f'"{p.title}" ({grade_label(p.grade)} {p.subject.lower()})'


@dataclass(frozen=True)
class ImportReport:
    path: str
    lessons: int
    passages: int
    replaced: int
    library_lessons: int
    library_passages: int


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "lesson"


def make_lesson(raw: dict, *, where: str) -> Lesson:
    missing = [k for k in ("title", "subject", "grade", "skill", "text") if not str(raw.get(k, "")).strip()]
    if missing:
        raise DataError(f"{where}: the lesson needs {', '.join(missing)}")
    try:
        grade = parse_grade(raw["grade"] if isinstance(raw["grade"], int) else str(raw["grade"]))
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from exc
    text = re.sub(r"[ \t]+", " ", str(raw["text"])).strip()
    if len(text) > MAX_LESSON_CHARS:
        raise DataError(f"{where}: the lesson text has {len(text)} characters; at most {MAX_LESSON_CHARS}")
    title, subject, skill = (str(raw[k]).strip() for k in ("title", "subject", "skill"))
    lesson_id = str(raw.get("id") or f"{_slug(subject)}-g{grade}-{_slug(title)}").strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,120}", lesson_id):
        raise DataError(f"{where}: lesson id {lesson_id!r} must be letters, digits, '-', '_', '.' or ':'")
    return Lesson(id=lesson_id, title=title, subject=subject, grade=grade, skill=skill, text=text)


def parse_jsonl(text: str, *, name: str) -> list[Lesson]:
    lessons = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(raw, dict):
            raise DataError(f"{name}:{number}: each line must be a JSON object")
        lessons.append(make_lesson(raw, where=f"{name}:{number}"))
    return lessons


_META = re.compile(r"^([A-Za-z_]+)\s*:\s*(.*)$")


def parse_markdown(text: str, *, name: str) -> list[Lesson]:
    lessons: list[Lesson] = []
    current: dict | None = None
    start = 0
    in_meta = False

    def close() -> None:
        if current is not None:
            current["text"] = "\n".join(current.pop("lines")).strip()
            lessons.append(make_lesson(current, where=f"{name}:{start}"))

    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("# "):
            close()
            current, start, in_meta = {"title": line[2:].strip(), "lines": []}, number, True
            continue
        if current is None:
            if line.strip():
                raise DataError(f"{name}:{number}: text before the first '# Title' line")
            continue
        match = _META.match(line.strip()) if in_meta else None
        if match and match.group(1).lower() in ("subject", "grade", "skill", "id"):
            current[match.group(1).lower()] = match.group(2).strip()
            continue
        if in_meta and not line.strip():
            in_meta = False
            continue
        in_meta = False
        current["lines"].append(line)
    close()
    return lessons


def read_lessons(path: Path) -> list[Lesson]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise DataError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB; split it into several files")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        lessons = parse_jsonl(text, name=path.name)
    elif suffix in (".md", ".markdown"):
        lessons = parse_markdown(text, name=path.name)
    else:
        raise DataError(f"{path}: unknown lesson format {suffix!r}; use .md (Markdown) or .jsonl")
    if not lessons:
        raise DataError(f"{path}: no lessons found")
    ids = [lesson.id for lesson in lessons]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DataError(f"{path}: lesson ids appear more than once: {', '.join(duplicates)}")
    return lessons


def split_passages(lesson: Lesson, *, words: int = PASSAGE_WORDS) -> list[Passage]:
    """Paragraphs packed into passages of about `words` words (a long paragraph is cut at sentences)."""
    sentences: list[str] = []
    for paragraph in re.split(r"\n\s*\n", lesson.text):
        sentences.extend(s for s in re.split(r"(?<=[.!?])\s+", " ".join(paragraph.split())) if s)
        sentences.append("")  # paragraph break: a good place to cut
    chunks, current = [], []
    for sentence in sentences:
        size = sum(len(s.split()) for s in current)
        if sentence == "" and size >= words * 0.6 or sentence and size + len(sentence.split()) > words and current:
            chunks.append(" ".join(s for s in current if s))
            current = []
        if sentence:
            current.append(sentence)
    if any(current):
        chunks.append(" ".join(s for s in current if s))
    return [Passage(passage_id=f"{lesson.id}#{i + 1}", lesson_id=lesson.id, title=lesson.title,
                    subject=lesson.subject, grade=lesson.grade, skill=lesson.skill, text=chunk)
            for i, chunk in enumerate(chunks) if chunk.strip()]


class ContentLibrary:
    """Passages and their embeddings under `root`; reloaded when another process imports."""

    def __init__(self, root: Path, *, embedder: Embedder | None = None):
        self.root = Path(root)
        self._embedder = embedder
        self._lock = threading.Lock()
        self._passages: list[Passage] = []
        self._vectors = np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        self._stamp: tuple | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = shared_embedder()
        return self._embedder

    @property
    def _passages_file(self) -> Path:
        return self.root / "passages.jsonl"

    @property
    def _vectors_file(self) -> Path:
        return self.root / "vectors.npy"

    def _load(self) -> None:
        try:
            stamp = (self._passages_file.stat().st_mtime_ns, self._vectors_file.stat().st_mtime_ns)
        except FileNotFoundError:
            self._passages, self._vectors, self._stamp = [], np.zeros((0, EMBEDDING_DIM), np.float32), None
            return
        if stamp == self._stamp:
            return
        passages = [Passage(**json.loads(line)) for line in self._passages_file.read_text().splitlines() if line]
        vectors = np.load(self._vectors_file)
        if vectors.shape != (len(passages), EMBEDDING_DIM):
            raise DataError(f"the content library in {self.root} is inconsistent ({len(passages)} passages, "
                            f"vectors {vectors.shape}): import the lessons again")
        self._passages, self._vectors, self._stamp = passages, vectors, stamp

    def passages(self) -> list[Passage]:
        with self._lock:
            self._load()
            return list(self._passages)

    def lessons(self) -> list[dict]:
        by_lesson: dict[str, dict] = {}
        for p in self.passages():
            entry = by_lesson.setdefault(p.lesson_id, {"id": p.lesson_id, "title": p.title, "subject": p.subject,
                                                       "grade": p.grade, "skill": p.skill, "passages": 0})
            entry["passages"] += 1
        return list(by_lesson.values())

    def is_empty(self) -> bool:
        return not self.passages()

    def import_file(self, path: Path, *, progress: Callable[[int, int], None] | None = None) -> ImportReport:
        lessons = read_lessons(Path(path))
        new_passages = [p for lesson in lessons for p in split_passages(lesson)]
        vectors = []
        step = 32
        for start in range(0, len(new_passages), step):
            vectors.append(self.embedder.encode([f"{p.title}. {p.text}" for p in new_passages[start:start + step]]))
            if progress is not None:
                progress(min(start + step, len(new_passages)), len(new_passages))
        new_vectors = np.concatenate(vectors).astype(np.float32) if vectors else np.zeros((0, EMBEDDING_DIM),
                                                                                           np.float32)
        ids = {lesson.id for lesson in lessons}
        with self._lock:
            self._load()
            keep = [i for i, p in enumerate(self._passages) if p.lesson_id not in ids]
            replaced = len({p.lesson_id for p in self._passages if p.lesson_id in ids})
            passages = [self._passages[i] for i in keep] + new_passages
            matrix = np.concatenate([self._vectors[keep], new_vectors]) if keep else new_vectors
            self._write(passages, matrix)
            self._load()
        return ImportReport(path=str(path), lessons=len(lessons), passages=len(new_passages), replaced=replaced,
                            library_lessons=len({p.lesson_id for p in passages}), library_passages=len(passages))

    def clear(self) -> int:
        with self._lock:
            self._load()
            count = len({p.lesson_id for p in self._passages})
            self._write([], np.zeros((0, EMBEDDING_DIM), np.float32))
            self._load()
            return count

    def _write(self, passages: list[Passage], vectors: np.ndarray) -> None:
        """Both files through temp files and renames; the vectors last, so a reader that sees new
        vectors also sees their passages (a reader catching the gap reloads on the next call)."""
        self.root.mkdir(parents=True, exist_ok=True)
        # Contexts close inside out: the passages are replaced first, the vectors last.
        with (durable_file(self._vectors_file, create_mode=0o600) as tmp_vectors,
              durable_file(self._passages_file, create_mode=0o600) as tmp_passages):
            tmp_passages.write_text("".join(json.dumps(asdict(p)) + "\n" for p in passages), encoding="utf-8")
            with open(tmp_vectors, "wb") as handle:
                np.save(handle, vectors.astype(np.float32))

    def quote(self, question: str, hits: list[Hit], *, sentences: int) -> str:
        """The `sentences` sentences of the best hit's passage closest to `question`, in the
        passage's own order ("" without hits): vetted text that opens a grounded answer."""
        if not hits or sentences <= 0:
            return ""
        parts = [s for s in re.split(r"(?<=[.!?])\s+", hits[0].passage.text) if len(s.split()) >= 3]
        if len(parts) <= sentences:
            return " ".join(parts)
        vectors = self.embedder.encode(parts + [question])
        order = np.argsort(-(vectors[:-1] @ vectors[-1]), kind="stable")[:sentences]
        return " ".join(parts[i] for i in sorted(order))

    def search(self, query: str, *, grade: int | None = None, subject: str | None = None, k: int = 3,
               min_score: float = 0.0) -> list[Hit]:
        """The `k` passages closest to `query` (at most one per lesson), above `min_score`.

        A learner in grade g gets passages of grades g-3..g+2 when any of those match; a subject
        given by the learner only breaks near-ties (+0.03)."""
        with self._lock:
            self._load()
            passages, vectors = self._passages, self._vectors
        if not passages or k <= 0 or not query.strip():
            return []
        scores = vectors @ self.embedder.encode([query])[0]  # (P,)
        adjusted = scores.copy()
        if subject:
            adjusted += 0.03 * np.array([p.subject.lower() == subject.lower() for p in passages])
        order = np.argsort(-adjusted)
        if grade is not None:
            low, high = grade - GRADE_WINDOW[0], grade + GRADE_WINDOW[1]
            in_window = [i for i in order if low <= passages[i].grade <= high and scores[i] >= min_score]
            if in_window:
                order = np.array(in_window)
        hits, seen = [], set()
        for i in order:
            if scores[i] < min_score:
                continue
            if passages[i].lesson_id in seen:
                continue
            seen.add(passages[i].lesson_id)
            hits.append(Hit(passage=passages[i], score=round(float(scores[i]), 4)))
            if len(hits) == k:
                break
        return hits


def grounding_instructions(hits: list[Hit]) -> str:
    """The system-prompt block that quotes the retrieved passages (the "system" layout)."""
    quoted = "\n".join(f"[{i + 1}] {h.passage.title}: {h.passage.text}" for i, h in enumerate(hits))
    return ("Use these lessons from the school's library. Explain using their facts, and do not say anything "
            "that disagrees with them.\n" + quoted)


def grounded_messages(messages: list[dict[str, str]], hits: list[Hit], *, layout: str = "system") -> list[dict[str, str]]:
    """The chat messages with the retrieved passages quoted in them.

    - "system": every passage appended to the system prompt (the first layout);
    - "user": the passages quoted in the learner's turn, right before the question.
    """
    if not hits:
        return messages
    out = [dict(m) for m in messages]
    if layout == "system":
        out[0]["content"] = out[0]["content"] + "\n\n" + grounding_instructions(hits)
        return out
    if layout == "user":
        quoted = "\n\n".join(f"Lesson \"{h.passage.title}\": {h.passage.text}" for h in hits)
        out[-1]["content"] = (f"{quoted}\n\nUsing the lesson above, answer this question: {out[-1]['content']}")
        return out
    raise ValueError(f"unknown grounding layout {layout!r}")


def source_note(hits: list[Hit]) -> str:
    if not hits:
        return "(No lesson in the school's library matched this question: this answer comes from the model alone.)"
    names = "; ".join(h.label() for h in hits)
    return f"(Based on the school's lesson{'s' if len(hits) > 1 else ''}: {names}.)"
