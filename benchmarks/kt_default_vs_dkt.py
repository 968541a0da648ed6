"""The default Main Brain, trained as a user trains it, next to the reference DKT on the same split.

For each shared KT data set (../shared/data/kt/<name>/):

* Main Brain: `aivo train-main --data train.csv --out <dir> --json` with no setting changed (a
  fresh AIVO_HOME, no AIVO_* variable but AIVO_NUM_THREADS), i.e. the split 80/10/10 by learner
  of train.csv, early stopping on its validation learners; then
  `aivo evaluate --model <dir> --data test.csv --json`.
* Reference DKT (benchmarks/kt_dkt.py): trained on the same training learners, early stopping
  on the same validation learners (the same `split_by_learner` call as train-main), scored on
  test.csv as `aivo evaluate` scores (the context of aivo.brain.context).

Both are also scored with the KT papers' chunk protocol (every chunk of 200 restarts cold), which
only differs from the above on histories longer than 200 attempts. Each result is kept in
benchmarks/out/kt_defaults/flow/<data set>-<model>.json as soon as it exists; the RESULTS.md table
is rendered from the kept results.

    python benchmarks/kt_default_vs_dkt.py                       # all three, 2 processes, 1 thread each
    python benchmarks/kt_default_vs_dkt.py --datasets statics --no-write
    python benchmarks/kt_default_vs_dkt.py --report              # render the kept results only
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE))

from bench import KT_DATA, RESULTS, machine, write_section  # noqa: E402

DATASETS = ("statics", "assist2015", "synthetic5")
KEPT = HERE / "out" / "kt_defaults" / "flow"
START, END = "<!-- kt-default:start -->", "<!-- kt-default:end -->"
MARGIN = 0.005  # issue 15: the default single model above the reference DKT by at least this much


def _user_env(home: Path, threads: int) -> dict[str, str]:
    """The environment of a user who changed nothing: no AIVO_* setting but the thread count."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIVO_")}
    env.update(AIVO_HOME=str(home), AIVO_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    return env


def _cli(args: list[str], env: dict[str, str]) -> tuple[dict, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "aivo", *args], capture_output=True, text=True, env=env,
                          cwd=str(REPO))
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"aivo {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout), seconds


def run_main(dataset: str, threads: int) -> dict:
    """`aivo train-main` then `aivo evaluate`, as the README tells a user."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix=f"aivo-{dataset}-") as tmp:
        home, model = Path(tmp) / "home", Path(tmp) / "model"
        env = _user_env(home, threads)
        train, train_seconds = _cli(["train-main", "--data", str(KT_DATA / dataset / "train.csv"),
                                     "--out", str(model), "--json"], env)
        test, eval_seconds = _cli(["evaluate", "--model", str(model), "--data", str(KT_DATA / dataset / "test.csv"),
                                   "--json"], env)
        chunks_auc = _chunk_protocol_auc(model, dataset)
        config = json.loads((model / "main_brain.json").read_text())["config"]
    out = {"model": "main", "dataset": dataset, "test_auc": test["metrics"]["auc"],
           "test_log_loss": test["metrics"]["log_loss"], "test_auc_chunks": chunks_auc,
           "num_scored": test["num_scored"], "validation_auc": train["validation"]["auc"],
           "internal_test_auc": train["test"]["metrics"]["auc"], "best_epoch": train["best_epoch"],
           "epochs_run": train["epochs_run"], "train_seconds": train["train_seconds"],
           "train_command_seconds": round(train_seconds, 1), "evaluate_seconds": round(eval_seconds, 1),
           "split": train["split"], "parameters": train["num_parameters"], "config": config,
           "threads": threads, "load_before": round(load, 2),
           "commands": [f"aivo train-main --data {KT_DATA / dataset / 'train.csv'} --out <dir> --json",
                        f"aivo evaluate --model <dir> --data {KT_DATA / dataset / 'test.csv'} --json"]}
    return _keep(out)


def _chunk_protocol_auc(model_dir: Path, dataset: str) -> float:
    """The Main Brain's test AUC under the KT papers' chunk protocol (for comparison with them)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from aivo.brain.batching import encode_log
    from aivo.brain.checkpoint import load_checkpoint
    from aivo.data.metrics import binary_metrics
    from aivo.brain.train import scored_probabilities
    from aivo.data.readers import read_interactions

    brain = load_checkpoint(model_dir)
    test = read_interactions(KT_DATA / dataset / "test.csv")
    prob = scored_probabilities(brain.model, encode_log(test, vocab=brain.vocab, tables=brain.tables,
                                                        config=brain.config, layout="chunks"))
    keep = ~np.isnan(prob)
    return round(binary_metrics(test.frame["correct"].to_numpy()[keep], prob[keep]).auc, 4)


def run_dkt(dataset: str, threads: int) -> dict:
    """The reference DKT on train-main's split of train.csv (same seed, same learners)."""
    import torch

    torch.set_num_threads(threads)
    from kt_dkt import DKTConfig, train_and_test_dkt

    from aivo.config import Settings
    from aivo.data.readers import read_interactions
    from aivo.data.splits import split_by_learner

    load = os.getloadavg()[0]
    seed = Settings().seed  # what train-main uses when AIVO_SEED is not set
    data = read_interactions(KT_DATA / dataset / "train.csv")
    split = split_by_learner(data, fractions=(0.8, 0.1, 0.1), seed=seed)
    test = read_interactions(KT_DATA / dataset / "test.csv")
    result = train_and_test_dkt(train=split.train, validation=split.validation, test=test, config=DKTConfig(),
                                seed=seed)
    out = {"model": "dkt", "dataset": dataset, **result, "split": split.sizes(), "threads": threads,
           "load_before": round(load, 2)}
    return _keep(out)


def _keep(out: dict) -> dict:
    out["measured"] = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    KEPT.mkdir(parents=True, exist_ok=True)
    (KEPT / f"{out['dataset']}-{out['model']}.json").write_text(json.dumps(out, indent=1))
    return out


def render(results: dict[str, dict[str, dict]], command: str) -> str:
    lines = [f"Rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the kept results; machine: "
             f"{machine()} (shared with other jobs: "
             "the load column is the 1-minute load average before each run), one torch thread per process.",
             f"Reproduce: `{command}`", "",
             "The default Main Brain is what `aivo train-main --data train.csv --out m` then `aivo evaluate "
             "--model m --data test.csv` give with no setting changed (train-main splits train.csv 80/10/10 by "
             "learner and stops early on the 10% validation learners). The reference DKT "
             "(benchmarks/kt_dkt.py) trains on the same 80% and stops early on the same 10%. Both are scored "
             "on test.csv as `aivo evaluate` scores: every attempt but a learner's first, from the context "
             "serving reads (aivo.brain.context; identical to the KT protocol's chunks up to 200 attempts). "
             "The chunk-protocol columns restart every 200 attempts, as the KT papers do.", "",
             "| data set | default Main Brain test AUC | reference DKT test AUC | difference (target >= +0.005) "
             "| chunk protocol: Main Brain / DKT | Main Brain train time (best epoch / run) | DKT train time "
             "| measured (load) |", "|---|---|---|---|---|---|---|---|"]
    for dataset in DATASETS:
        main, dkt = results.get(dataset, {}).get("main"), results.get(dataset, {}).get("dkt")
        if not main and not dkt:
            continue
        diff = (main["test_auc"] - dkt["test_auc"]) if main and dkt else None
        verdict = "" if diff is None else (" (met)" if diff >= MARGIN else
                                           f" (missed by {MARGIN - diff:.4f})")
        cells = [dataset,
                 f"{main['test_auc']:.4f}" if main else "-",
                 f"{dkt['test_auc']:.4f}" if dkt else "-",
                 f"{diff:+.4f}{verdict}" if diff is not None else "-",
                 (f"{main['test_auc_chunks']:.4f}" if main else "-") + " / "
                 + (f"{dkt['test_auc_chunks']:.4f}" if dkt else "-"),
                 f"{main['train_seconds']:.0f} s ({main['best_epoch']} / {main['epochs_run']})" if main else "-",
                 f"{dkt['train_seconds']:.0f} s ({dkt['best_epoch']} / {dkt['epochs_run']})" if dkt else "-",
                 "; ".join(f"{r['model']} {r['measured']} ({r['load_before']})" for r in (main, dkt) if r)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Details:", "```", json.dumps(results, indent=1), "```"]
    return "\n".join(lines)


def load_kept() -> dict[str, dict[str, dict]]:
    results: dict[str, dict[str, dict]] = {}
    for path in sorted(KEPT.glob("*.json")):
        record = json.loads(path.read_text())
        results.setdefault(record["dataset"], {})[record["model"]] = record
    return {d: results[d] for d in DATASETS if d in results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--models", nargs="+", default=["main", "dkt"], choices=["main", "dkt"])
    parser.add_argument("--parallel", type=int, default=2, help="Runs side by side (one torch thread each).")
    parser.add_argument("--no-write", action="store_true", help=f"Do not update {RESULTS.name}.")
    parser.add_argument("--report", action="store_true", help="Run nothing: render the kept results.")
    args = parser.parse_args()
    command = "python " + " ".join([str(Path(__file__).relative_to(REPO)), *sys.argv[1:]])
    if not args.report:
        jobs = [(d, m) for d in args.datasets for m in args.models]
        started = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = {pool.submit(run_main if m == "main" else run_dkt, d, 1): (d, m) for d, m in jobs}
            print(f"{len(jobs)} runs, {args.parallel} at a time; kept in {KEPT}", flush=True)
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    d, m = pending.pop(future)
                    r = future.result()
                    print(f"[{time.perf_counter() - started:.0f}s] {d} {m}: test AUC {r['test_auc']:.4f} "
                          f"(chunks {r['test_auc_chunks']:.4f}), best epoch {r['best_epoch']}/{r['epochs_run']}, "
                          f"{r['train_seconds']:.0f}s", flush=True)
    text = render(load_kept(), command if not args.report else "python benchmarks/kt_default_vs_dkt.py")
    print("\n" + text)
    if not args.no_write:
        write_section(start=START, end=END, body=text)
        print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
