"""Simulator speed: 10,000 learners x 100 interactions (target: under 30 s on a 2-core machine).

Reproduce:
    python benchmarks/simulator_benchmark.py                  # print only
    python benchmarks/simulator_benchmark.py --write-results  # also update benchmarks/RESULTS.md

Times `simulate_cohort` (best and median of --repeats runs, same seed: the output is checked to be
identical across runs), then writing Parquet and CSV, reading them back through the readers, and
the oracle metrics. Single-threaded NumPy (the simulator is vectorized, not parallel).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from aivo.data.readers import read_interactions  # noqa: E402
from aivo.data.simulator import SimulatorConfig, oracle_metrics, simulate_cohort  # noqa: E402
from aivo.data.writers import write_interactions  # noqa: E402
from bench import RESULTS, load_average, machine, peak_rss_mib, write_section  # noqa: E402

START, END = "<!-- simulator-benchmark:start -->", "<!-- simulator-benchmark:end -->"
TARGET_S = 30.0


def _timed(fn):
    began = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - began


def run(learners: int, interactions: int, seed: int, repeats: int) -> dict:
    config = SimulatorConfig(num_learners=learners, interactions_per_learner=interactions)
    load_before = load_average()
    times, first = [], None
    for _ in range(repeats):
        cohort, seconds = _timed(lambda: simulate_cohort(config=config, seed=seed))
        times.append(seconds)
        if first is None:
            first = cohort
        elif not cohort.log.frame.equals(first.log.frame):
            raise SystemExit("the simulator is not deterministic: two runs with the same seed differ")
    oracle, oracle_s = _timed(lambda: oracle_metrics(first.log))
    io = {}
    with tempfile.TemporaryDirectory() as folder:
        for suffix in ("parquet", "csv"):
            path = Path(folder) / f"sim.{suffix}"
            _, io[f"write_{suffix}_s"] = _timed(lambda: write_interactions(first.log, path))
            again, io[f"read_{suffix}_s"] = _timed(lambda: read_interactions(path))
            io[f"{suffix}_mb"] = path.stat().st_size / 2**20
            if len(again.frame) != len(first.log.frame):
                raise SystemExit(f"{suffix} round trip lost rows")
    return {
        "learners": learners, "interactions": interactions, "rows": first.log.num_interactions, "seed": seed,
        "simulate_best_s": min(times), "simulate_median_s": statistics.median(times), "repeats": repeats,
        "oracle_auc": oracle.auc, "oracle_log_loss": oracle.log_loss, "correct_rate": oracle.positive_rate,
        "oracle_s": oracle_s, "load_before": load_before, "load_after": load_average(), "peak_rss_mb": peak_rss_mib(), **io,
    }


def report(r: dict, command: str) -> str:
    verdict = "meets" if r["simulate_best_s"] < TARGET_S else "MISSES"
    return "\n".join([
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}; 1-minute load average "
        f"{r['load_before']:.1f} before and {r['load_after']:.1f} after (other jobs share the cores).",
        f"Reproduce: `{command}`",
        "",
        "| measure | value |",
        "|---|---|",
        f"| simulate {r['learners']:,} learners x {r['interactions']} interactions ({r['rows']:,} rows), "
        f"best of {r['repeats']} | {r['simulate_best_s']:.2f} s ({verdict} the {TARGET_S:.0f} s target) |",
        f"| simulate, median of {r['repeats']} | {r['simulate_median_s']:.2f} s |",
        f"| oracle metrics (scikit-learn AUC, log-loss, ...) | {r['oracle_s']:.2f} s |",
        f"| write Parquet / read back (validated) | {r['write_parquet_s']:.2f} s / {r['read_parquet_s']:.2f} s "
        f"({r['parquet_mb']:.0f} MiB) |",
        f"| write CSV / read back (validated) | {r['write_csv_s']:.2f} s / {r['read_csv_s']:.2f} s "
        f"({r['csv_mb']:.0f} MiB) |",
        f"| peak resident memory of the whole run | {r['peak_rss_mb']:.0f} MiB |",
        f"| oracle AUC / log-loss (seed {r['seed']}, default config) | {r['oracle_auc']:.4f} / "
        f"{r['oracle_log_loss']:.4f} |",
        f"| correct rate | {r['correct_rate']:.4f} |",
        "",
        "Same seed, same output: the runs above were checked to be identical.",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learners", type=int, default=10_000)
    parser.add_argument("--interactions", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write-results", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    command = "python benchmarks/simulator_benchmark.py" + "".join(
        f" --{name} {getattr(args, name)}" for name in ("learners", "interactions", "seed", "repeats")
        if getattr(args, name) != parser.get_default(name))
    result = run(args.learners, args.interactions, args.seed, args.repeats)
    section = report(result, command)
    print(section)
    if args.write_results:
        write_section(heading="Simulator", start=START, end=END, body=section)
        print(f"\nupdated {RESULTS}")
    return 0 if result["simulate_best_s"] < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
