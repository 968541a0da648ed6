"""SmolLM2-135M-Instruct (the default tutor model) on this machine's CPU.

1. Single stream with 1 and with 2 torch threads: completion tokens/s, time to first token,
   process memory (RSS) after loading the model.
2. 8 learners, each with their own LoRA adapter (r=16 q/v, random weights: serving cost does
   not depend on what an adapter learned): one mixed-adapter batch vs the same 8 requests
   one by one (same seeds; outputs checked equal). Target: batch >= 2x the tokens/s.
3. Per-learner adapters learn a style: two learners are cloned with the service's defaults
   (`start_clone`, AIVO_TUTOR_CLONE_* settings) on 12 explanations each written in their
   style, then answer 8 held-out questions they never saw; we compare their answers with the
   base model's on the style's measure:
   - learner "short": explanations in very short sentences -> mean words per sentence;
   - learner "analogy": every explanation opens with "Think of it like this:" -> share of
     answers that use that opener.

    python benchmarks/tutor_smollm2.py                    # needs `aivo tutor init` first
    python benchmarks/tutor_smollm2.py --write-results
    python benchmarks/tutor_smollm2.py --timings-only --write-results   # parts 1 and 2 only (~3 min
                                                          # on a quiet 2-core machine): rewrites the
                                                          # timing section, keeps the style section

Parts 1-2 and part 3 are written to two sections of benchmarks/RESULTS.md; timings depend on
what else runs, so each section records the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import machine, write_report, write_section  # noqa: E402
from tutor_benchmark import create_adapters, promote_main, rss_mib, run_requests  # noqa: E402

START, END = "<!-- tutor-smollm2:start -->", "<!-- tutor-smollm2:end -->"
STYLE_START, STYLE_END = "<!-- tutor-smollm2-style:start -->", "<!-- tutor-smollm2-style:end -->"
TITLE = "## Tutor on SmolLM2-135M-Instruct (CPU)"
PROMPTS = ["What is photosynthesis?", "What is a fraction?", "What is the water cycle?", "What is gravity?",
           "What is a noun?", "What is a ratio?", "What is an ecosystem?", "What is erosion?"]

SHORT_STYLE = [
    ("What is photosynthesis?", "Plants make food. They use sunlight. They take in water. They take in air. They make sugar."),
    ("What is a fraction?", "A fraction is a part. The whole is cut up. The parts are equal. You count the parts."),
    ("What is rain?", "Rain is water. It falls from clouds. Clouds hold tiny drops. Drops get heavy. Then they fall."),
    ("What is a magnet?", "A magnet pulls iron. It has two ends. Opposite ends pull. Same ends push."),
    ("What is a verb?", "A verb is an action. Run is a verb. Jump is a verb. It tells what happens."),
    ("What is the sun?", "The sun is a star. It is very hot. It gives us light. It gives us heat."),
    ("What is a map?", "A map is a picture. It shows a place. It has a key. The key explains symbols."),
    ("What is a habitat?", "A habitat is a home. Animals live there. It has food. It has water."),
    ("What is addition?", "Addition puts numbers together. Three and two make five. The answer is the sum."),
    ("What is erosion?", "Erosion moves rock. Water carries sand. Wind blows dust. Ice scrapes land."),
    ("What is a cell?", "A cell is tiny. Living things have cells. Cells are small parts. They keep you alive."),
    ("What is a noun?", "A noun names things. Dog is a noun. School is a noun. Mom is a noun."),
]
ANALOGY_OPENER = "Think of it like this:"
ANALOGY_STYLE = [(q, f"{ANALOGY_OPENER} " + a) for q, a in [
    ("What is photosynthesis?", "a leaf is a tiny kitchen. Sunlight is the stove, and water and air are the "
                                "ingredients. The plant cooks them into sugar, its food."),
    ("What is a fraction?", "a pizza cut into equal slices. Each slice is a fraction of the whole pizza."),
    ("What is rain?", "a sponge that gets too full. Clouds fill with water drops until they cannot hold more, "
                      "and the water falls as rain."),
    ("What is a magnet?", "two friends who hold hands or turn away. Opposite poles pull together; matching "
                          "poles push apart."),
    ("What is a verb?", "the engine of a sentence. The verb is the action that makes the sentence go."),
    ("What is the sun?", "a giant campfire in space. It is a star that gives Earth light and heat."),
    ("What is a map?", "a bird's eye photo of a place, with a key that tells what each symbol means."),
    ("What is a habitat?", "an animal's house and neighborhood. It gives the animal food, water and shelter."),
    ("What is addition?", "filling a basket. You put 3 apples in, then 2 more, and count 5 in all."),
    ("What is erosion?", "sandpaper. Wind and water slowly rub rock and soil away and carry them off."),
    ("What is a cell?", "a brick in a wall. Living things are built from many tiny cells."),
    ("What is a noun?", "a name tag. A noun names a person, a place or a thing."),
]]
HELD_OUT = ["What is gravity?", "What is a planet?", "What is a volcano?", "What is an adjective?",
            "What is multiplication?", "What is a community?", "What is an ecosystem?", "What is a river?"]


def service_for(home: Path, model: Path, threads: int, **extra):
    from aivo.config import Settings
    from aivo.services.tutor import TutorService

    settings = Settings(home=home, brain_model=str(model), num_threads=threads, tutor_max_batch_size=8,
                        tutor_batch_window_ms=20.0, **extra)
    service = TutorService(settings=settings)
    service.load()
    return service


def single_stream(service, max_new_tokens: int) -> dict:
    from aivo.tutor.schemas import GenerateRequest, StudentContextIn
    from aivo.tutor.streams import TokenEvent

    ttfts, rates = [], []
    for i, prompt in enumerate(PROMPTS[:3]):
        request = GenerateRequest(prompt=prompt, context=StudentContextIn(grade=5), temperature=0,
                                  max_new_tokens=max_new_tokens, seed=i)

        async def run() -> tuple[float, float, int]:
            started = time.perf_counter()
            first = None
            tokens = 0
            async for name, data in service.generate_events(request):
                if name == "token" and first is None:
                    first = time.perf_counter() - started
                if name == "done":
                    tokens = data["usage"]["completion_tokens"]
            return first or float("nan"), time.perf_counter() - started, tokens

        first, total, tokens = asyncio.run(run())
        ttfts.append(first)
        rates.append(tokens / total)
    return {"ttft_s": statistics.median(ttfts), "tokens_per_s": statistics.median(rates)}


def eight_learners(service, max_new_tokens: int) -> dict:
    learners = create_adapters(service, 8, seed=0)
    jobs = [(PROMPTS[i], learners[i], 100 + i) for i in range(8)]
    seq_s, seq_tokens, seq_texts, _ = run_requests(service, jobs, concurrent=False, max_new_tokens=max_new_tokens)
    bat_s, bat_tokens, bat_texts, sizes = run_requests(service, jobs, concurrent=True, max_new_tokens=max_new_tokens)
    return {"sequential_tokens_per_s": seq_tokens / seq_s, "batched_tokens_per_s": bat_tokens / bat_s,
            "ratio": (bat_tokens / bat_s) / (seq_tokens / seq_s), "same_texts": seq_texts == bat_texts,
            "batch_size": max(sizes), "tokens": seq_tokens}


def words_per_sentence(text: str) -> float:
    from aivo.tutor.readability import split_sentences

    sentences = split_sentences(text)
    return statistics.fmean(len(s.split()) for s in sentences) if sentences else 0.0


def style_shift(home: Path, model: Path, threads: int, max_new_tokens: int) -> dict:
    from aivo.services import tutor_clones
    from aivo.tutor.schemas import CloneStartRequest, GenerateRequest, PreferredExplanationIn, StudentContextIn

    service = service_for(home, model, threads)
    try:
        clones = {}
        for learner, examples in (("style-short", SHORT_STYLE), ("style-analogy", ANALOGY_STYLE)):
            # A clone is a trainer job: run it here, as `aivo tutor clone` does.
            status = tutor_clones.clone_now(registry=service.registry, settings=service.settings,
                                            request=CloneStartRequest(
                student_id=learner, student_profile={"grade": "4"},
                preferred_explanations=[PreferredExplanationIn(prompt=q, explanation=a) for q, a in examples]))
            if status.status != "completed":
                raise RuntimeError(f"clone of {learner} {status.status}: {status.error}")
            clones[learner] = status
        answers: dict[str, list[str]] = {}
        for who in (None, "style-short", "style-analogy"):
            from concurrent.futures import ThreadPoolExecutor

            def ask(q: str) -> str:
                return service.generate(GenerateRequest(prompt=q, temperature=0, max_new_tokens=max_new_tokens, seed=0,
                                                        context=StudentContextIn(student_id=who, grade="4"))).explanation

            with ThreadPoolExecutor(8) as pool:
                answers[who or "base"] = list(pool.map(ask, HELD_OUT))
    finally:
        service.close()
    target_short = statistics.fmean(words_per_sentence(a) for _, a in SHORT_STYLE)
    opener = re.compile(r"think of it like", re.IGNORECASE)
    return {
        "target_words_per_sentence": target_short,
        "base_words_per_sentence": statistics.fmean(words_per_sentence(a) for a in answers["base"]),
        "short_words_per_sentence": statistics.fmean(words_per_sentence(a) for a in answers["style-short"]),
        "base_opener_share": sum(bool(opener.search(a)) for a in answers["base"]) / len(HELD_OUT),
        "analogy_opener_share": sum(bool(opener.search(a)) for a in answers["style-analogy"]) / len(HELD_OUT),
        "clone_seconds": {k: v.updated_at.timestamp() - v.created_at.timestamp() for k, v in clones.items()},
        "examples": {k: v[0][:200] for k, v in answers.items()},
    }


def run(args) -> dict:
    import torch

    model = Path(args.model)
    work = Path(tempfile.mkdtemp(prefix="aivo-smollm2-bench-"))
    load = [os.getloadavg()[0]]
    result: dict = {"single": {}, "max_new_tokens": args.max_new_tokens}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        before = rss_mib()
        service = service_for(work / f"home-{threads}", model, threads)
        result["rss_mib"] = rss_mib()
        result["rss_growth_mib"] = result["rss_mib"] - before
        result["single"][threads] = single_stream(service, args.max_new_tokens)
        print(f"threads {threads}: {result['single'][threads]}", flush=True)
        if threads == 1:
            promote_main(service.settings)
            result["eight"] = eight_learners(service, args.max_new_tokens)
            print(f"eight learners: {result['eight']}", flush=True)
        service.close()
    load.append(os.getloadavg()[0])
    result["load"] = list(load)
    torch.set_num_threads(1)
    if not args.timings_only:
        home = work / "home-style"
        from aivo.config import Settings

        promote_main(Settings(home=home))
        result["style_load"] = [os.getloadavg()[0]]
        result["style"] = style_shift(home, model, 1, args.max_new_tokens)
        result["style_load"].append(os.getloadavg()[0])
        print(f"style: {result['style']}", flush=True)
        load.append(os.getloadavg()[0])
    result["parameters"] = 134_515_008
    return result


def report(r: dict, command: str) -> str:
    """The timing section (parts 1 and 2)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    s1, s2, e = r["single"][1], r["single"][2], r["eight"]
    lines = [TITLE, "", START,
             f"Measured {now} on {machine()}; 1-minute load average {r['load'][0]:.1f} before, "
             f"{r['load'][1]:.1f} after (with 2 cores, a load above 2 means other jobs took CPU time and these "
             f"timings are pessimistic), float32. Greedy, {r['max_new_tokens']} new tokens at most, grade-5 "
             f"system prompt; 1 thread and 2 threads back to back.",
             f"Reproduce: `{command}`", "",
             "| measure | value |", "|---|---|",
             f"| single stream, 1 thread | {s1['tokens_per_s']:.1f} tokens/s, time to first token {s1['ttft_s']:.2f} s |",
             f"| single stream, 2 threads | {s2['tokens_per_s']:.1f} tokens/s, time to first token {s2['ttft_s']:.2f} s |",
             f"| process memory with the model loaded | {r['rss_mib']:.0f} MiB RSS |",
             f"| 8 learners one by one (each its own adapter, 1 thread) | {e['sequential_tokens_per_s']:.1f} tokens/s |",
             f"| 8 learners in one mixed-adapter batch | {e['batched_tokens_per_s']:.1f} tokens/s: **{e['ratio']:.2f}x** "
             f"(target >= 2x); same texts as one by one: {e['same_texts']} |", END]
    return "\n".join(lines)


def style_report(r: dict, command: str) -> str:
    """The style section (part 3)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    st = r["style"]
    lines = [STYLE_START,
             f"Measured {now} on {machine()}; 1-minute load average {r['style_load'][0]:.1f} before, "
             f"{r['style_load'][1]:.1f} after. Reproduce: `{command}`", "",
             "Per-learner adapters, 8 held-out questions (never in the learner's data), greedy:", "",
             "| learner's style | base model | learner's adapter | learner's own examples |", "|---|---|---|---|",
             f"| short sentences: words per sentence | {st['base_words_per_sentence']:.1f} | "
             f"{st['short_words_per_sentence']:.1f} | {st['target_words_per_sentence']:.1f} |",
             f"| \"Think of it like this:\" analogies: share of answers using it | {st['base_opener_share']:.2f} | "
             f"{st['analogy_opener_share']:.2f} | 1.00 |",
             "",
             f"Clone time with the defaults (3 epochs, r=16): " + ", ".join(
                 f"{k} {v:.0f} s" for k, v in st["clone_seconds"].items()) + ".", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    home = Path(os.environ.get("AIVO_HOME", ".aivo"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(home / "tutor" / "smollm2-135m-instruct"))
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--timings-only", action="store_true",
                        help="tokens/s, time to first token, memory and the batch of 8; no adapter training")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    if not Path(args.model).is_dir():
        print(f"no model at {args.model}: run `aivo tutor init` first", file=sys.stderr)
        return 2
    command = "python benchmarks/tutor_smollm2.py" + (
        f" --max-new-tokens {args.max_new_tokens}" if args.max_new_tokens != 48 else "")
    result = run(args)
    timing = report(result, command + (" --timings-only" if args.timings_only else ""))
    print(timing)
    if args.write_results:
        write_report(timing, start=START, end=END)
    if not args.timings_only:
        style = style_report(result, command)
        print(style)
        if args.write_results:
            write_section(start=STYLE_START, end=STYLE_END, heading=TITLE[3:],
                          body=style.split(STYLE_START, 1)[1].split(STYLE_END, 1)[0])
    return 0 if result["eight"]["ratio"] >= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
