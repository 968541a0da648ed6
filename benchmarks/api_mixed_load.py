"""Mixed load: 70% recommendations and 30% ingest at a fixed arrival rate, from 50 clients.

Setup (not timed), shared with benchmarks/api_recommendations.py: a fresh AIVO_HOME with a
simulated cohort imported into the registry, a Main Brain trained on it and promoted, a service
key, and a real `aivo serve --workers N` (SQLite, the embedded default; `--database-url` for
PostgreSQL).

A load generator in a separate process (asyncio + aiohttp, `--concurrency` connections) sends
requests at a fixed arrival rate (open loop; latency counts from the moment a request was due,
so queueing in the generator counts against the server). Each request is, with probability
`--ingest-share`, a POST /v1/interactions of 1-5 new interactions of one random learner (orders
after the learner's history, never sent before), else a GET of a random learner's
recommendations. Every worker's recommendation cache is first filled with every learner (as in
api_recommendations.py: the steady state of a running server), then after `--warmup` seconds
at the target rate (not measured) the measured phase runs for `--duration` seconds; an ingest
invalidates its learner's cached recommendation, so about a third of the learners asked for
are computed again.

Checked afterwards, from the database: every interaction the server acknowledged (201) is
stored exactly once, and nothing else was added. Connection resets (the server closing a
keep-alive connection under a request) are counted apart from HTTP errors. The machine's load
average is recorded before, every 5 s during, and after the measured phase: other jobs share
these cores.

Target: p99 < 250 ms at 100 requests/s for 60 s from 50 clients, no error, no reset, every
acknowledged row stored once.

    python benchmarks/api_mixed_load.py                     # the target run
    python benchmarks/api_mixed_load.py --duration 10       # quick look
    python benchmarks/api_mixed_load.py --write-results     # also update benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_common import ServeProcess, aivo_env, create_key, load_average, machine, write_subsection  # noqa: E402
from api_recommendations import _cold_then_prime, _counters, prepare  # noqa: E402

TARGET_P99_MS = 250.0
START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


# --- load generator (runs in its own process) -------------------------------------------------

def _is_reset(exc: BaseException) -> bool:
    import aiohttp

    if isinstance(exc, (aiohttp.ServerDisconnectedError, ConnectionResetError, BrokenPipeError)):
        return True
    return isinstance(exc, aiohttp.ClientOSError) and getattr(exc, "errno", None) in (104, 32)


async def _mixed(*, base: str, token: str, learners: list[str], first_order: int, rate: float, duration: float,
                 concurrency: int, ingest_share: float, rng: random.Random, next_order: dict[str, int],
                 measure: bool) -> dict:
    import aiohttp

    total = int(rate * duration)
    queue: asyncio.Queue = asyncio.Queue()
    out: dict = {"rec": [], "ingest": [], "errors": {}, "resets": 0, "acked": [], "unacked": [], "loads": []}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base, headers={"Authorization": f"Bearer {token}"}, connector=connector,
                                     timeout=timeout) as client:
        async def worker() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    return
                due, kind, learner, rows = item
                error = None
                try:
                    if kind == "rec":
                        async with client.get(f"/v1/learners/{learner}/recommendations") as r:
                            await r.read()
                            error = None if r.status == 200 else f"recommendations HTTP {r.status}"
                    else:
                        async with client.post("/v1/interactions", json={"interactions": rows}) as r:
                            body = await r.read()
                            if r.status == 201 and json.loads(body)["inserted"] == len(rows):
                                out["acked"].extend((learner, row["order"]) for row in rows)
                            else:
                                error = f"ingest HTTP {r.status}"
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    if _is_reset(exc):
                        out["resets"] += 1
                    error = f"{kind} {type(exc).__name__}"
                if kind == "ingest" and error:
                    out["unacked"].extend((learner, row["order"]) for row in rows)
                out[kind].append(time.perf_counter() - due)
                if error:
                    out["errors"][error] = out["errors"].get(error, 0) + 1

        async def sample_load() -> None:
            while True:
                out["loads"].append(round(load_average(), 2))
                await asyncio.sleep(5)

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        sampler = asyncio.create_task(sample_load()) if measure else None
        start = time.perf_counter() + 0.05
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            learner = rng.choice(learners)
            if rng.random() < ingest_share:
                rows = []
                for _ in range(rng.randint(1, 5)):
                    order = next_order.get(learner, first_order)
                    next_order[learner] = order + 1
                    rows.append({"learner_id": learner, "item_id": f"mixed-{rng.randrange(40)}", "correct":
                                 rng.randint(0, 1), "order": order, "response_time_s": round(rng.uniform(2, 60), 1),
                                 "timestamp": (START + timedelta(seconds=order)).isoformat()})
                queue.put_nowait((due, "ingest", learner, rows))
            else:
                queue.put_nowait((due, "rec", learner, None))
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
        if sampler is not None:
            sampler.cancel()
        out["elapsed_s"] = time.perf_counter() - start
    out["requests"] = total
    return out


def load_generator(args) -> int:
    learners = json.loads(Path(args.learners_file).read_text())
    rng = random.Random(args.seed)
    next_order: dict[str, int] = {}
    common = dict(base=args.base, token=args.token, learners=learners, first_order=args.interactions,
                  rate=args.rate, concurrency=args.concurrency, ingest_share=args.ingest_share, rng=rng,
                  next_order=next_order)
    result: dict = {}
    # Steady state, as in api_recommendations.py: every worker's cache holds every learner before
    # the load starts; from then on only ingested learners are computed again.
    _, result["priming_passes"] = asyncio.run(_cold_then_prime(base=args.base, token=args.token, learners=learners,
                                                               cold=0, workers=args.workers))
    warm = asyncio.run(_mixed(duration=args.warmup, measure=False, **common)) if args.warmup > 0 else None
    result["load_before"] = load_average()
    result["counters_before"] = _counters(args.base, args.token)
    result["measured"] = asyncio.run(_mixed(duration=args.duration, measure=True, **common))
    result["load_after"] = load_average()
    result["counters_after"] = _counters(args.base, args.token)
    for key in ("acked", "unacked"):  # every row sent, warm-up included, for the exactly-once check
        result[key] = (warm[key] if warm else []) + result["measured"].pop(key)
    result["warmup_errors"] = warm["errors"] if warm else {}
    result["warmup_resets"] = warm["resets"] if warm else 0
    Path(args.out).write_text(json.dumps(result))
    return 0


# --- orchestration ----------------------------------------------------------------------------

def stored_rows(env: dict[str, str], first_order: int) -> dict[tuple[str, int], int]:
    """{(pseudonym, order): copies} of every interaction at or after `first_order` (the ones this
    benchmark sent), read from the registry."""
    os.environ.update({k: v for k, v in env.items() if k.startswith("AIVO_")})
    import sqlalchemy as sa

    from aivo.config import Settings
    from aivo.registry import open_registry

    registry = open_registry(Settings())
    with registry.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT l.pseudonym, i.position, count(*) FROM interactions i JOIN learners l "
                                    "ON l.id = i.learner_id WHERE i.position >= :first GROUP BY l.pseudonym, "
                                    "i.position"), {"first": first_order}).all()
    return {(p, int(o)): int(n) for p, o, n in rows}


def check_exactly_once(env: dict[str, str], result: dict, first_order: int) -> dict:
    from aivo.config import Settings
    from aivo.data.privacy import pseudonymize_learner_ids

    key = Settings().resolved_secret_key()
    acked, unacked = result["acked"], result["unacked"]
    names = sorted({learner for learner, _ in acked + unacked})
    pseudonym = dict(zip(names, pseudonymize_learner_ids(names, key=key)))
    stored = stored_rows(env, first_order)
    acked_keys = {(pseudonym[learner], order) for learner, order in acked}
    unacked_keys = {(pseudonym[learner], order) for learner, order in unacked}
    return {"acknowledged": len(acked), "acknowledged_distinct": len(acked_keys),
            "missing": sum(1 for k in acked_keys if k not in stored),
            "duplicated": sum(1 for k in acked_keys if stored.get(k, 0) > 1),
            "unexpected": sum(1 for k in stored if k not in acked_keys and k not in unacked_keys),
            "unacknowledged_sent": len(unacked_keys),
            "unacknowledged_stored": sum(1 for k in unacked_keys if k in stored)}


def run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="aivo-mixed-bench-") as tmp:
        home = Path(tmp) / "home"
        env = aivo_env(home, args.database_url)
        learners, model = prepare(home, env, args)
        token = create_key(env=env)
        learners_file = Path(tmp) / "learners.json"
        learners_file.write_text(json.dumps(learners))
        out_file = Path(tmp) / "load.json"
        uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        with ServeProcess(env=env, workers=args.workers, log_path=Path(tmp) / "serve.log") as server:
            cmd = [sys.executable, __file__, "--load-generator", "--base", server.base, "--token", token,
                   "--learners-file", str(learners_file), "--out", str(out_file)]
            for name in ("rate", "duration", "concurrency", "warmup", "ingest_share", "interactions", "seed",
                         "workers"):
                cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
            subprocess.run(cmd, check=True)
            server_log = (Path(tmp) / "serve.log").read_text(errors="replace")
        result = json.loads(out_file.read_text())
        result["exactly_once"] = check_exactly_once(env, result, args.interactions)
    measured = result.pop("measured")
    rec = np.array(measured["rec"]) * 1e3
    ingest = np.array(measured["ingest"]) * 1e3
    both = np.concatenate([rec, ingest])
    before, after = result["counters_before"], result["counters_after"]
    return {**{k: v for k, v in result.items() if k not in ("acked", "unacked")}, "model": model,
            "uptime_before": uptime_before, "loads_during": measured["loads"], "requests": measured["requests"],
            "elapsed_s": measured["elapsed_s"], "achieved_rps": measured["requests"] / measured["elapsed_s"],
            "errors": measured["errors"], "resets": measured["resets"],
            "p50_ms": float(np.percentile(both, 50)), "p99_ms": float(np.percentile(both, 99)),
            "max_ms": float(both.max()), "rec": _quantiles(rec), "ingest": _quantiles(ingest),
            "computed": after["false"] - before["false"], "cached": after["true"] - before["true"],
            "server_tracebacks": server_log.count("Traceback")}


def _quantiles(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"n": 0}
    return {"n": int(values.size), "p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}


def passed(r: dict) -> bool:
    once = r["exactly_once"]
    return (r["p99_ms"] < TARGET_P99_MS and not r["errors"] and not r["resets"] and not once["missing"]
            and not once["duplicated"] and not once["unexpected"])


def report(r: dict, args, command: str) -> str:
    once = r["exactly_once"]
    errors = sum(r["errors"].values())
    backend = "PostgreSQL" if args.database_url else "SQLite"
    during = r["loads_during"] or [float("nan")]
    loads = (f"min {min(during):.1f}, median {float(np.median(during)):.1f}, max {max(during):.1f} "
             f"({len(r['loads_during'])} samples)")
    m = r["model"]
    verdict = "meets" if r["p99_ms"] < TARGET_P99_MS else f"MISSES (by {r['p99_ms'] - TARGET_P99_MS:.0f} ms)"
    return "\n".join([
        "### Mixed load: 70% recommendations, 30% ingest", "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}; `aivo serve --workers "
        f"{args.workers}` on {backend} and the load generator (a separate process) share the cores with other "
        f"jobs. Machine load before: `{r['uptime_before']}`; 1-minute load average during the measured phase "
        f"(sampled every 5 s until its last answer): {loads}; after: {r['load_after']:.1f}.",
        f"Reproduce: `{command}`", "",
        f"Data: {args.learners:,} simulated learners, {m['rows']:,} interactions; Main Brain {m['version']}. "
        f"Each request picks a random learner; an ingest sends 1-5 new interactions of that learner (which "
        f"invalidates its cached recommendation). Before the load, every worker's cache was filled "
        f"({r['priming_passes']} passes over every learner).", "",
        "| measure | value |", "|---|---|",
        f"| rate, duration, clients | {args.rate:g} requests/s for {args.duration:g} s after {args.warmup:g} s of "
        f"warm-up, {args.concurrency} concurrent connections ({r['achieved_rps']:.1f} requests/s achieved) |",
        f"| latency from the due time, all requests, p50 / p99 / max | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} / "
        f"{r['max_ms']:.1f} ms ({verdict} the p99 < {TARGET_P99_MS:.0f} ms target) |",
        f"| recommendations, p50 / p99 | {r['rec']['p50']:.1f} / {r['rec']['p99']:.1f} ms ({r['rec']['n']:,} "
        f"requests; {r['cached']:,.0f} from the cache, {r['computed']:,.0f} computed) |",
        f"| ingest, p50 / p99 | {r['ingest']['p50']:.1f} / {r['ingest']['p99']:.1f} ms ({r['ingest']['n']:,} "
        f"requests) |",
        f"| errors | {errors} of {r['requests']:,}" + (f" ({r['errors']})" if errors else "") + " |",
        f"| connection resets | {r['resets']} (warm-up: {r['warmup_resets']}) |",
        f"| acknowledged interactions stored exactly once | {once['acknowledged_distinct']:,} acknowledged: "
        f"{once['missing']} missing, {once['duplicated']} duplicated, {once['unexpected']} rows nobody sent; "
        f"{once['unacknowledged_sent']} sent without acknowledgement ({once['unacknowledged_stored']} of them "
        "stored) |",
        f"| server log | {r['server_tracebacks']} tracebacks |",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--ingest-share", type=float, default=0.3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--learners", type=int, default=500)
    parser.add_argument("--interactions", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: embedded SQLite)")
    parser.add_argument("--write-results", action="store_true")
    # load generator mode (internal)
    parser.add_argument("--load-generator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--learners-file", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load_generator:
        return load_generator(args)
    command = "python benchmarks/api_mixed_load.py" + "".join(
        f" --{name.replace('_', '-')} {getattr(args, name)}" for name in
        ("rate", "duration", "concurrency", "warmup", "ingest_share", "workers", "learners", "interactions",
         "epochs", "seed", "database_url") if getattr(args, name) != parser.get_default(name))
    result = run(args)
    section = report(result, args, command)
    print(section)
    if args.write_results:
        write_subsection("api_mixed_load", section)
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
