"""How good are the tutor's explanations? The evaluation set and its measures.

The set (data/explanation_eval.jsonl, written for AIVO) has 121 K-12 questions across
science, math, English, social studies and health, grades 1-12. Each carries reference key
facts (each fact lists accepted wordings, "a|b"; a wording matches as a word prefix, so
"evaporat" matches "evaporates"), statements that contradict the reference (misconceptions,
matched as phrases), and an accommodation (rotating none, ADHD, dyslexia, autism, anxiety).

Every question goes through `TutorService.generate` (aivo.services.tutor), exactly as a learner's request would
(safety, retrieval from the content library when it holds lessons, the learner's context,
batching), greedy decoding. Per answer (the explanation, without the source note):

- key-fact coverage: share of the question's key facts the answer states;
- contradictions: whether it states a listed misconception (not negated just before it);
- readability: whether its Flesch-Kincaid grade is inside the learner's band;
- accommodation compliance: ADHD (numbered steps, each at most 15 words, at most 3 per chunk),
  dyslexia (every sentence at most 12 words), autism ("Main idea:" then "Details:" once each,
  no exclamation marks, no listed idioms), anxiety (no pressure words, the kind opener and closer);
- latency (request to final answer, batched with the others) and completion tokens/s overall.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources

from aivo.tutor.accommodations import (IDIOMS, MAX_PLAIN_WORDS, MAX_STEP_WORDS, PRESSURE_WORDS, STEPS_PER_CHUNK,
                                      get_accommodation)
from aivo.tutor.frontdoor import Tutor
from aivo.tutor.readability import split_sentences
from aivo.tutor.schemas import GenerateRequest, StudentContextIn


def load_explanation_set() -> list[dict]:
    text = resources.files("aivo.tutor").joinpath("data/explanation_eval.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower().replace("\u2019", "'"))


def fact_stated(answer: str, fact: str) -> bool:
    lowered = _norm(answer)
    return any(re.search(r"(?<![a-z0-9])" + re.escape(_norm(option.strip())), lowered)
               for option in fact.split("|") if option.strip())


NEGATION_WINDOW = 3  # words before a misconception phrase in which a negation withdraws it


def _negated(words: list[str]) -> bool:
    return any(w in ("not", "never", "no", "nor", "without") or w.endswith("n't") for w in words)


def contradiction_stated(answer: str, phrase: str) -> bool:
    """Whether a sentence of `answer` states the misconception `phrase`, not negated by one of the
    NEGATION_WINDOW words before it ("Never add the denominators", "not necessarily the same size"
    state the reference, not the misconception)."""
    target = re.sub(r"[^a-z0-9' ]+", " ", _norm(phrase)).split()
    for sentence in split_sentences(answer):
        words = re.sub(r"[^a-z0-9' ]+", " ", _norm(sentence)).split()
        for i in range(len(words) - len(target) + 1):
            if words[i:i + len(target)] == target and not _negated(words[max(0, i - NEGATION_WINDOW):i]):
                return True
    return False


def complies(answer: str, accommodation: str | None) -> bool | None:
    """Whether the answer's shape follows the accommodation (None without one)."""
    if not accommodation:
        return None
    if accommodation == "adhd":
        steps = re.findall(r"^\s*\d+\.\s+(.*)$", answer, flags=re.MULTILINE)
        chunks = [c for c in re.split(r"\n\s*\n", answer) if re.search(r"^\s*\d+\.", c, flags=re.MULTILINE)]
        longest_chunk = max((len(re.findall(r"^\s*\d+\.", c, flags=re.MULTILINE)) for c in chunks), default=0)
        return (len(steps) >= 2 and all(len(s.split()) <= MAX_STEP_WORDS for s in steps)
                and longest_chunk <= STEPS_PER_CHUNK)
    if accommodation == "dyslexia":
        sentences = split_sentences(answer)
        return bool(sentences) and all(len(s.split()) <= MAX_PLAIN_WORDS for s in sentences)
    if accommodation == "autism":
        lowered = answer.lower()
        return (answer.startswith("Main idea:") and lowered.count("main idea:") == 1 and lowered.count("details:") <= 1
                and "!" not in answer and not any(idiom in lowered for idiom in IDIOMS))
    if accommodation == "anxiety":
        acc = get_accommodation("anxiety")
        body = answer.replace(acc.opener or "", "").replace(acc.closer or "", "")
        return answer.startswith(acc.opener or "") and answer.endswith(acc.closer or "") \
            and not PRESSURE_WORDS.search(body)
    raise ValueError(f"no compliance rule for accommodation {accommodation!r}")


@dataclass
class AnswerScore:
    id: str
    subject: str
    grade: int
    accommodation: str | None
    coverage: float
    facts_stated: int
    facts_total: int
    contradiction: bool
    within_band: bool
    fk_grade: float
    complies: bool | None
    grounded: bool
    sources: list[str]
    latency_s: float
    completion_tokens: int
    blocked: bool
    answer: str


@dataclass
class ExplanationReport:
    model: str
    grounded_share: float
    questions: int
    key_fact_coverage: float  # mean over questions
    answers_with_contradiction: float
    within_grade_band: float
    compliance: dict[str, float]  # per accommodation, share of answers that comply
    latency_median_s: float
    latency_p95_s: float
    tokens_per_s: float  # completion tokens of all answers / wall-clock time of the run
    wall_s: float
    blocked: int
    by_subject: dict[str, float] = field(default_factory=dict)  # coverage
    answers: list[AnswerScore] = field(default_factory=list)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("answers")
        return d


def score_answer(item: dict, response, latency_s: float) -> AnswerScore:
    text = response.explanation
    stated = [f for f in item["key_facts"] if fact_stated(text, f)]
    return AnswerScore(
        id=item["id"], subject=item["subject"], grade=item["grade"], accommodation=item.get("accommodation"),
        coverage=len(stated) / len(item["key_facts"]), facts_stated=len(stated), facts_total=len(item["key_facts"]),
        contradiction=any(contradiction_stated(text, c) for c in item.get("contradictions", [])),
        within_band=response.readability.within_band, fk_grade=response.readability.fk_grade,
        complies=complies(text, item.get("accommodation")), grounded=response.grounded,
        sources=[s.title for s in response.sources], latency_s=round(latency_s, 3),
        completion_tokens=response.usage.completion_tokens, blocked=response.safety.blocked, answer=text)


def evaluate_explanations(*, service: "Tutor", items: list[dict] | None = None, max_new_tokens: int = 128,
                          concurrency: int = 8, seed: int = 0) -> ExplanationReport:
    items = items if items is not None else load_explanation_set()
    service.load()

    def ask(item: dict) -> AnswerScore:
        context = StudentContextIn(grade=item["grade"], subject=item["subject"],
                                   accommodations=[item["accommodation"]] if item.get("accommodation") else [])
        started = time.perf_counter()
        response = service.generate(GenerateRequest(prompt=item["question"], context=context, temperature=0,
                                                    max_new_tokens=max_new_tokens, seed=seed))
        return score_answer(item, response, time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        scores = list(pool.map(ask, items))
    return summarize(scores, wall_s=time.perf_counter() - started, model=service.model_name)


def summarize(scores: list[AnswerScore], *, wall_s: float, model: str) -> ExplanationReport:
    """The report over answers (also over a subset of a run: pass that run's wall time)."""
    latencies = sorted(s.latency_s for s in scores)
    compliance: dict[str, list[bool]] = {}
    for s in scores:
        if s.complies is not None:
            compliance.setdefault(s.accommodation, []).append(s.complies)
    subjects: dict[str, list[float]] = {}
    for s in scores:
        subjects.setdefault(s.subject, []).append(s.coverage)
    return ExplanationReport(
        model=model, grounded_share=round(sum(s.grounded for s in scores) / len(scores), 4),
        questions=len(scores), key_fact_coverage=round(statistics.fmean(s.coverage for s in scores), 4),
        answers_with_contradiction=round(sum(s.contradiction for s in scores) / len(scores), 4),
        within_grade_band=round(sum(s.within_band for s in scores) / len(scores), 4),
        compliance={k: round(sum(v) / len(v), 4) for k, v in sorted(compliance.items())},
        latency_median_s=round(statistics.median(latencies), 3),
        latency_p95_s=round(latencies[int(0.95 * (len(latencies) - 1))], 3),
        tokens_per_s=round(sum(s.completion_tokens for s in scores) / wall_s, 2), wall_s=round(wall_s, 1),
        blocked=sum(s.blocked for s in scores),
        by_subject={k: round(statistics.fmean(v), 4) for k, v in sorted(subjects.items())}, answers=scores)
