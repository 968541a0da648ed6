"""Tutor benchmark on CPU with the tiny offline model.

Measures, through the real service (batch worker, LoRA cache, registry-backed adapters):
- tokens/s of a single stream (one request at a time, base model) and time to first token;
- 8 concurrent learners, each with their own LoRA adapter: one mixed-adapter batch vs the
  same 8 requests one by one (same seeds, so the same tokens; the outputs are checked equal);
- adapter load time and memory per cached adapter;
- 100 learners' adapters served from one base model (cache of 100, and the default 16);
- assessment latency per answer with cached reference embeddings.

    python benchmarks/tutor_benchmark.py                 # builds the default tiny model first
    python benchmarks/tutor_benchmark.py --model DIR     # reuse a tiny model folder
    python benchmarks/tutor_benchmark.py --write-results # also update benchmarks/RESULTS.md

Adapters for the serving figures have random LoRA weights (r=16, alpha=32 on q/v, the seed
design's shape): serving cost does not depend on what an adapter learned.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import RESULTS, load_average, machine, write_section  # noqa: E402
START, END = "<!-- tutor-benchmark:start -->", "<!-- tutor-benchmark:end -->"
PROMPTS = ["What is photosynthesis?", "What is a fraction?", "What is the water cycle?", "What is gravity?",
           "What is a noun?", "What is a ratio?", "What is an ecosystem?", "What is erosion?"]


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_service(home: Path, model_dir: Path, *, cache_size: int, threads: int):
    from aivo.config import Settings
    from aivo.services.tutor import TutorService

    settings = Settings(home=home, brain_model=str(model_dir), num_threads=threads, adapter_cache_size=cache_size,
                        tutor_max_batch_size=8, tutor_batch_window_ms=5.0, tutor_temperature=0.7)
    service = TutorService(settings=settings)
    service.load()
    return service


def promote_main(settings) -> None:
    import torch

    from aivo.registry import open_registry, promote_main_version, register_main_version

    registry = open_registry(settings)
    with registry.session() as session:
        ref = registry.store.put_tensors({"weight": torch.zeros(4)}, metadata={"kind": "benchmark-main"})
        register_main_version(session=session, store=registry.store, version="bench-main-v1", artifact=ref,
                              architecture={"kind": "benchmark"})
        promote_main_version(session=session, version="bench-main-v1", actor="benchmark", reason="benchmark")


def create_adapters(service, count: int, seed: int) -> list[str]:
    """`count` learners with random r=16 q/v LoRA adapters, saved through the registry store."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict

    from aivo.tutor.adapter_store import AdapterTraining
    from aivo.tutor.options import LoraSpec

    spec = LoraSpec(r=16, alpha=32, dropout=0.0, target_modules=("q_proj", "v_proj"))
    model = service.engine.model

    def shapes():
        model.add_adapter("shape_probe", LoraConfig(r=spec.r, lora_alpha=spec.alpha,
                                                    target_modules=list(spec.target_modules)))
        state = get_peft_model_state_dict(model, adapter_name="shape_probe")
        model.delete_adapter("shape_probe")
        return {k: tuple(v.shape) for k, v in state.items()}

    names = service.batcher.call_in_worker(shapes)
    learners = []
    for i in range(count):
        generator = torch.Generator().manual_seed(seed + i)
        tensors = {k: torch.randn(shape, generator=generator) * (0.05 if "lora_B" in k else shape[-1] ** -0.5)
                   for k, shape in names.items()}
        learner = f"bench-learner-{i:03d}"
        service.store.save(learner_id=learner, tenant="default", lora=spec, tensors=tensors,
                           base_fingerprint=service.engine.fingerprint, base_model=service.model_name,
                           training=AdapterTraining(epochs=0, batch_size=0, samples=0, final_loss=None,
                                                    details={"benchmark": "random weights"}))
        learners.append(learner)
    return learners


def run_requests(service, jobs: list[tuple[str, str | None, int]], *, concurrent: bool, max_new_tokens: int):
    """jobs: (prompt, learner or None, seed). Returns (seconds, tokens, texts, batch sizes).

    Prompts are rendered and adapters looked up before the clock starts, in both modes, so
    the timing is the decoding work; concurrent jobs are all queued at once."""
    from aivo.tutor.prompting import StudentContext, build_messages

    prepared = []
    for prompt, learner, seed in jobs:
        messages = build_messages(context=StudentContext(grade=5), prompt=prompt)
        with service.engine.lock:
            ids = service.engine.render_prompt(messages)
        prepared.append((ids, service.learner_adapter(learner),
                         service.params(max_new_tokens=max_new_tokens, seed=seed)))
    batcher = service.batcher
    started = time.perf_counter()
    if concurrent:
        streams = [batcher.submit(prompt_ids=ids, adapter=ref, params=params) for ids, ref, params in prepared]
        finals = [s.result()[1] for s in streams]
    else:
        finals = [batcher.submit(prompt_ids=ids, adapter=ref, params=params).result()[1]
                  for ids, ref, params in prepared]
    seconds = time.perf_counter() - started
    return seconds, sum(f.completion_tokens for f in finals), [f.text for f in finals], [f.batch_size for f in finals]


def bench_single_stream(service, max_new_tokens: int, repeats: int) -> dict:
    import asyncio

    from aivo.tutor.schemas import GenerateRequest, StudentContextIn

    jobs = [(p, None, 100 + i) for i, p in enumerate(PROMPTS)]
    run_requests(service, jobs[:2], concurrent=False, max_new_tokens=max_new_tokens)  # warm up
    rates = []
    for _ in range(repeats):
        seconds, tokens, _, _ = run_requests(service, jobs, concurrent=False, max_new_tokens=max_new_tokens)
        rates.append(tokens / seconds)

    async def first_token(prompt: str) -> float:
        started = time.perf_counter()
        events = service.generate_events(GenerateRequest(prompt=prompt, context=StudentContextIn(grade=5),
                                                         max_new_tokens=8, seed=1))
        async for name, _ in events:
            if name == "token":
                elapsed = time.perf_counter() - started
                async for _rest in events:
                    pass
                return elapsed
        return float("nan")

    ttft = [asyncio.run(first_token(p)) for p in PROMPTS]
    return {"tokens_per_s": statistics.median(rates), "ttft_ms": 1000 * statistics.median(ttft)}


def bench_eight_learners(service, learners: list[str], max_new_tokens: int, repeats: int) -> dict:
    jobs = [(PROMPTS[i], learners[i], 200 + i) for i in range(8)]
    run_requests(service, jobs, concurrent=True, max_new_tokens=max_new_tokens)  # load the 8 adapters
    seq, bat = [], []
    for _ in range(repeats):
        s_sec, s_tok, s_text, _ = run_requests(service, jobs, concurrent=False, max_new_tokens=max_new_tokens)
        b_sec, b_tok, b_text, sizes = run_requests(service, jobs, concurrent=True, max_new_tokens=max_new_tokens)
        if s_text != b_text or s_tok != b_tok:
            raise RuntimeError("batched outputs differ from one-by-one outputs: isolation broken")
        seq.append(s_tok / s_sec)
        bat.append(b_tok / b_sec)
    return {"sequential_tokens_per_s": statistics.median(seq), "batched_tokens_per_s": statistics.median(bat),
            "ratio": statistics.median(bat) / statistics.median(seq), "batch_size": max(sizes),
            "tokens": b_tok}


def bench_adapter_loading(home: Path, model_dir: Path, learners: list[str], threads: int) -> dict:
    """Load every learner's adapter one after the other into a cache of 16: the first 16 loads
    create PEFT adapter slots, the others reuse an evicted learner's slot. Then, in a cache as
    large as the cohort, the resident memory each adapter adds."""
    timings = []
    service = make_service(home, model_dir, cache_size=16, threads=threads)
    try:
        cache = service.adapter_cache
        for lid in learners:
            ref = service.store.latest(lid)
            started = time.perf_counter()
            service.batcher.call_in_worker(lambda ref=ref: cache.acquire([ref]))
            timings.append(1000 * (time.perf_counter() - started))
        stats = cache.stats()
    finally:
        service.close()
    service = make_service(home, model_dir, cache_size=len(learners), threads=threads)
    try:
        refs = [service.store.latest(lid) for lid in learners]
        before = rss_mib()
        service.batcher.call_in_worker(lambda: service.adapter_cache.acquire(refs))
        after = rss_mib()
        resident = service.adapter_cache.stats()
        return {"new_slot_ms": statistics.median(timings[:stats.slots_created]),
                "reused_slot_ms": statistics.median(timings[stats.slots_created:]),
                "slots": stats.slots_created, "loads": len(timings),
                "adapter_bytes": resident.cached_bytes / resident.size,
                "rss_per_adapter_kib": 1024 * (after - before) / len(refs), "cached": resident.size,
                "base_params": service.engine.num_parameters,
                "base_bytes": service.engine.num_parameters * 4}
    finally:
        service.close()


def bench_hundred_learners(home: Path, model_dir: Path, learners: list[str], threads: int, cache_size: int,
                           max_new_tokens: int) -> dict:
    """One request per learner, all submitted at once. With a cache as large as the cohort, the
    adapters are loaded first (the measured window has no loads); otherwise the LRU churns."""
    service = make_service(home, model_dir, cache_size=cache_size, threads=threads)
    try:
        cache = service.adapter_cache
        if cache_size >= len(learners):
            refs = [service.store.latest(lid) for lid in learners]
            service.batcher.call_in_worker(lambda: cache.acquire(refs))
        loads_before, evictions_before = cache.stats().loads, cache.stats().evictions
        jobs = [(PROMPTS[i % len(PROMPTS)], lid, 300 + i) for i, lid in enumerate(learners)]
        seconds, tokens, _, sizes = run_requests(service, jobs, concurrent=True, max_new_tokens=max_new_tokens)
        stats = cache.stats()
        return {"seconds": seconds, "tokens_per_s": tokens / seconds, "requests_per_s": len(jobs) / seconds,
                "loads": stats.loads - loads_before, "evictions": stats.evictions - evictions_before,
                "mean_batch": statistics.mean(sizes), "resident": stats.size}
    finally:
        service.close()


def bench_assessment() -> dict:
    from aivo.tutor.assessment import Assessor
    from aivo.tutor.assessment_calibration import load_labeled_set, rubric_of

    assessor = Assessor()
    items = load_labeled_set()
    for item in items:  # reference embeddings cached once per rubric, as in the service
        assessor.score(answer="warm up", rubric=rubric_of(item))
    timings = []
    for item in items:
        rubric = rubric_of(item)
        for response in item["responses"]:
            started = time.perf_counter()
            assessor.score(answer=response["text"], rubric=rubric)
            timings.append(1000 * (time.perf_counter() - started))
    timings.sort()
    return {"median_ms": statistics.median(timings), "p95_ms": timings[int(0.95 * (len(timings) - 1))],
            "answers": len(timings)}


def run(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    load_before = load_average()
    work = Path(tempfile.mkdtemp(prefix="aivo-tutor-bench-"))
    model_dir = Path(args.model) if args.model else work / "tiny"
    build_s = None
    if not args.model:
        from aivo.tutor.tiny_model import TinyModelSpec, build_tiny_model

        started = time.perf_counter()
        build_tiny_model(output_dir=model_dir, spec=TinyModelSpec(seed=args.seed))
        build_s = time.perf_counter() - started
    home = work / "home"
    service = make_service(home, model_dir, cache_size=16, threads=args.threads)
    promote_main(service.settings)
    learners = create_adapters(service, args.learners, args.seed)
    result = {"build_s": build_s, "threads": args.threads, "learners": args.learners,
              "max_new_tokens": args.max_new_tokens}
    result["single"] = bench_single_stream(service, args.max_new_tokens, args.repeats)
    result["eight"] = bench_eight_learners(service, learners, args.max_new_tokens, args.repeats)
    service.close()
    result["loading"] = bench_adapter_loading(home, model_dir, learners, args.threads)
    result["hundred_warm"] = bench_hundred_learners(home, model_dir, learners, args.threads, len(learners),
                                                    args.max_new_tokens)
    result["hundred_16"] = bench_hundred_learners(home, model_dir, learners, args.threads, 16, args.max_new_tokens)
    result["assess"] = bench_assessment()
    result["load_avg"] = (load_before, load_average())
    return result


def report(r: dict, command: str) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    s, e, ld, h, h16, a = r["single"], r["eight"], r["loading"], r["hundred_warm"], r["hundred_16"], r["assess"]
    lines = [
        f"Measured {now} on {machine()}, torch threads {r['threads']}; 1-minute load average {r['load_avg'][0]:.1f} before and "
        f"{r['load_avg'][1]:.1f} after (other jobs share the cores). Tiny model: {ld['base_params']:,} parameters"
        + (f", built in {r['build_s']:.0f} s" if r["build_s"] else "") + f"; up to {r['max_new_tokens']} new tokens "
        "per request, sampling at temperature 0.7 with fixed seeds.",
        f"Reproduce: `{command}`", "",
        "| measure | value |", "|---|---|",
        f"| single stream, base model | {s['tokens_per_s']:.0f} tokens/s (time to first token {s['ttft_ms']:.0f} ms) |",
        f"| 8 learners, one by one (each its own adapter) | {e['sequential_tokens_per_s']:.0f} tokens/s |",
        f"| 8 learners, one mixed-adapter batch (batch of {e['batch_size']}) | {e['batched_tokens_per_s']:.0f} tokens/s: "
        f"**{e['ratio']:.1f}x** (target >= 2x); same tokens and texts as one by one |",
        f"| adapter load into a reused slot (artifact read + sha256 check + copy), median of "
        f"{ld['loads'] - ld['slots']} | {ld['reused_slot_ms']:.1f} ms |",
        f"| adapter load creating a PEFT slot (first {ld['slots']} loads only) | {ld['new_slot_ms']:.1f} ms |",
        f"| memory per cached adapter | {ld['adapter_bytes'] / 1024:.0f} KiB of weights (r=16, q/v); process memory "
        f"grew {ld['rss_per_adapter_kib']:.0f} KiB per adapter with {ld['cached']} resident (base model: "
        f"{ld['base_bytes'] / 2**20:.1f} MiB, held once) |",
        f"| {r['learners']} learners from one base, all {h['resident']} adapters resident | "
        f"{h['requests_per_s']:.1f} requests/s, {h['tokens_per_s']:.0f} tokens/s, mean batch {h['mean_batch']:.1f}, "
        f"{h['loads']} loads while serving |",
        f"| {r['learners']} learners from one base, cache of 16 (default) | {h16['requests_per_s']:.1f} requests/s, "
        f"{h16['tokens_per_s']:.0f} tokens/s, {h16['loads']} loads and {h16['evictions']} evictions while serving |",
        f"| assessment latency per answer ({a['answers']} answers, references cached) | median {a['median_ms']:.1f} ms, "
        f"p95 {a['p95_ms']:.1f} ms (target < 50 ms) |",
        "",
        "The tiny model makes per-token compute small, so these figures mostly measure the serving machinery "
        "(batching, adapter switching, Python overhead), which is what they are for; a real model is bound by "
        "its matrix multiplications instead.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="an existing tiny model folder (default: build one)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--learners", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-results", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    command = "python benchmarks/tutor_benchmark.py" + "".join(
        f" --{name.replace('_', '-')} {getattr(args, name)}"
        for name in ("threads", "learners", "max_new_tokens", "repeats", "seed")
        if getattr(args, name) != parser.get_default(name))
    result = run(args)
    section = report(result, command)
    print(section)
    if args.write_results:
        write_section(heading="Tutor", start=START, end=END, body=section)
        print(f"\nupdated {RESULTS}")
    ok = result["eight"]["ratio"] >= 2 and result["assess"]["median_ms"] < 50
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
