"""Explanation quality on the evaluation set: tiny model vs SmolLM2 vs SmolLM2 grounded.

Three arms, each through `TutorService.generate` with default settings (what learners get):
1. the tiny model (built by `aivo tutor init-tiny`), no content library;
2. SmolLM2-135M-Instruct (`aivo tutor init`), no content library: it says it answers from
   the model alone;
3. SmolLM2 with the bundled vetted lessons imported (`aivo tutor content import`).

    python benchmarks/tutor_explanations.py                       # all 121 questions
    python benchmarks/tutor_explanations.py --limit 20            # a quick look
    python benchmarks/tutor_explanations.py --write-results       # update benchmarks/RESULTS.md

Measures are defined in aivo/tutor/explanation_eval.py. Answers are written to
`<work>/answers-<arm>.jsonl` for reading.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import machine, write_report  # noqa: E402

START, END = "<!-- tutor-explanations:start -->", "<!-- tutor-explanations:end -->"
TITLE = "## Tutor explanations: evaluation set"
LESSONS = Path(__file__).resolve().parents[1] / "src" / "aivo" / "tutor" / "data" / "lessons"


def arm(name: str, home: Path, model: Path, items, args) -> dict:
    from aivo.config import Settings
    from aivo.tutor.explanation_eval import evaluate_explanations
    from aivo.services.tutor import TutorService

    grounding = {"tutor_content_top_k": args.top_k, "tutor_content_layout": args.layout} \
        if args.top_k is not None else {"tutor_content_layout": args.layout}
    service = TutorService(settings=Settings(home=home, brain_model=str(model), num_threads=args.threads,
                                             **grounding))
    try:
        report = evaluate_explanations(service=service, items=items, max_new_tokens=args.max_new_tokens,
                                       concurrency=args.concurrency)
    finally:
        service.close()
    out = Path(args.work) / f"answers-{name}{args.tag}.jsonl"
    out.write_text("".join(json.dumps(asdict(a)) + "\n" for a in report.answers))
    out.with_suffix(".rate").write_text(str(report.tokens_per_s))
    print(f"{name}: {json.dumps(report.summary())}", flush=True)
    return report.summary()


def reuse(path: Path, items) -> dict:
    """An arm's report from the answers an earlier run wrote (same settings), restricted to
    `items`; tokens/s and latencies are those of that run."""
    from aivo.tutor.explanation_eval import AnswerScore, summarize

    ids = {item["id"] for item in items}
    scores = [AnswerScore(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    chosen = [s for s in scores if s.id in ids]
    wall = sum(s.completion_tokens for s in scores) / max(1e-9, float(path.with_suffix(".rate").read_text())) \
        if path.with_suffix(".rate").exists() else float("nan")
    summary = summarize(chosen, wall_s=wall * len(chosen) / len(scores), model="smollm2-135m-instruct").summary()
    summary["reused_from"] = str(path)
    return summary


def select_questions(items: list[dict], which: str) -> list[dict]:
    """"all"; "test": the first 60 (science and math, the set the grounding figures are reported on);
    "dev": every other question after those (English, social studies, math, health), the only ones
    used to choose how the lessons are quoted (layout, passages per question)."""
    if which == "all":
        return items
    if which == "test":
        return items[:60]
    if which == "dev":
        return items[60::2]
    raise SystemExit(f"--questions must be all, test or dev, not {which!r}")


def run(args) -> dict:
    import torch

    from aivo.tutor.content import ContentLibrary
    from aivo.tutor.explanation_eval import load_explanation_set

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    items = select_questions(load_explanation_set(), args.questions)[: args.limit or None]
    load = [os.getloadavg()[0]]
    results = {}
    plain, grounded = work / "home-plain", work / "home-grounded"
    library = ContentLibrary(grounded / "tutor" / "content")
    if library.is_empty():
        for path in sorted(LESSONS.glob("*.md")):
            library.import_file(path)
    arms = args.arms.split(",")
    if args.tiny and "tiny" in arms:
        results["tiny"] = arm("tiny", plain, Path(args.tiny), items, args)
    for name, home in (("smollm2", plain), ("smollm2_grounded", grounded)):
        if name in arms:
            results[name] = arm(name, home, Path(args.smollm2), items, args)
        elif (work / f"answers-{name}{args.tag}.jsonl").exists():
            results[name] = reuse(work / f"answers-{name}{args.tag}.jsonl", items)
    load.append(os.getloadavg()[0])
    return {"arms": results, "questions": len(items), "load": load, "lessons": len(library.lessons()),
            "quote_only": quote_only_coverage(library, items) if "smollm2_grounded" in results else None}


def quote_only_coverage(library, items) -> float:
    """Key-fact coverage of the quoted lesson sentences alone (what the grounded answer opens
    with, AIVO_TUTOR_CONTENT_QUOTE), to tell the lesson's part from the model's."""
    import statistics

    from aivo.config import Settings
    from aivo.tutor.explanation_eval import fact_stated

    settings = Settings()
    scores = []
    for item in items:
        hits = library.search(item["question"], grade=item["grade"], subject=item["subject"],
                              k=settings.tutor_content_top_k, min_score=settings.tutor_content_min_score)
        quote = library.quote(item["question"], hits, sentences=settings.tutor_content_quote)
        scores.append(sum(fact_stated(quote, f) for f in item["key_facts"]) / len(item["key_facts"]))
    return round(statistics.fmean(scores), 4)


def report(r: dict, command: str, args) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    names = {"tiny": "tiny model", "smollm2": "SmolLM2, model alone", "smollm2_grounded": "SmolLM2, grounded"}
    arms = [k for k in ("tiny", "smollm2", "smollm2_grounded") if k in r["arms"]]
    rows = [("key-fact coverage (mean)", lambda a: f"{a['key_fact_coverage']:.3f}"),
            ("answers stating a listed misconception", lambda a: f"{a['answers_with_contradiction']:.3f}"),
            ("readability inside the grade band", lambda a: f"{a['within_grade_band']:.3f}"),
            ("ADHD compliance", lambda a: f"{a['compliance'].get('adhd', float('nan')):.2f}"),
            ("dyslexia compliance", lambda a: f"{a['compliance'].get('dyslexia', float('nan')):.2f}"),
            ("autism compliance", lambda a: f"{a['compliance'].get('autism', float('nan')):.2f}"),
            ("anxiety compliance", lambda a: f"{a['compliance'].get('anxiety', float('nan')):.2f}"),
            ("answers grounded in a lesson", lambda a: f"{a['grounded_share']:.2f}"),
            ("latency median / p95 (s, 8 concurrent)", lambda a: f"{a['latency_median_s']:.1f} / {a['latency_p95_s']:.1f}"),
            ("completion tokens/s (all answers / wall time)", lambda a: f"{a['tokens_per_s']:.1f}"),
            ("blocked by the safety filter", lambda a: str(a["blocked"]))]
    lines = [TITLE, "", START,
             f"Measured {now} on {machine()} (shared), torch "
             f"threads {args.threads}; 1-minute load average "
             f"{r['load'][0]:.1f} before and {r['load'][1]:.1f} after: timings are pessimistic. "
             f"{r['questions']} questions of `explanation_eval.jsonl` ({args.questions}: "
             f"{', '.join(sorted({k for a in r['arms'].values() for k in a['by_subject']}))}), greedy, at most {args.max_new_tokens} new tokens, {args.concurrency} requests in "
             f"flight; grounded arm: {r['lessons']} vetted lessons of `tutor/data/lessons/` imported.",
             f"Reproduce: `{command}`", "",
             "| measure | " + " | ".join(names[a] for a in arms) + " |", "|---|" + "---|" * len(arms)]
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(fn(r["arms"][a]) for a in arms) + " |")
    if "smollm2" in r["arms"] and "smollm2_grounded" in r["arms"]:
        g, u = r["arms"]["smollm2_grounded"]["key_fact_coverage"], r["arms"]["smollm2"]["key_fact_coverage"]
        lines += ["", f"Grounding changes SmolLM2's key-fact coverage by {g - u:+.3f} ({u:.3f} -> {g:.3f})."]
    if r.get("quote_only") is not None:
        lines += [f"The quoted lesson sentences alone (what a grounded answer opens with) cover {r['quote_only']:.3f} "
                  "of the key facts; the rest of the grounded figure is the model's text after them."]
    lines += ["Coverage by subject: " + "; ".join(
        f"{names[a]}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["arms"][a]["by_subject"].items()) for a in arms), END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    home = Path(os.environ.get("AIVO_HOME", ".aivo"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smollm2", default=str(home / "tutor" / "smollm2-135m-instruct"))
    parser.add_argument("--tiny", default=str(home / "tutor" / "tiny"), help="tiny model folder ('' to skip)")
    parser.add_argument("--limit", type=int, default=0, help="first N questions (0 = all)")
    parser.add_argument("--arms", default="tiny,smollm2,smollm2_grounded",
                        help="arms to run; others are read from answers-<arm>.jsonl in --work when present")
    parser.add_argument("--questions", default="all", help="all, test (first 60) or dev (see select_questions)")
    parser.add_argument("--layout", default="system", choices=("system", "user"),
                        help="where the grounded arm quotes the lessons (AIVO_TUTOR_CONTENT_LAYOUT)")
    parser.add_argument("--top-k", type=int, default=None, help="passages per question (default: the setting's)")
    parser.add_argument("--tag", default="", help="suffix of the answer files (to keep variants apart)")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default=tempfile.mkdtemp(prefix="aivo-explanations-"))
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    for path in (args.smollm2, args.tiny):
        if path and not Path(path).is_dir():
            print(f"no model at {path}: run `aivo tutor init` (and `aivo tutor init-tiny`) first", file=sys.stderr)
            return 2
    command = "python benchmarks/tutor_explanations.py" + "".join(
        f" --{n.replace('_', '-')} {getattr(args, n)}" for n in ("questions", "limit", "max_new_tokens",
                                                                 "concurrency", "threads", "arms", "layout", "top_k")
        if getattr(args, n) != parser.get_default(n))
    result = run(args)
    section = report(result, command, args)
    print(section)
    if args.write_results:
        write_report(section, start=START, end=END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
