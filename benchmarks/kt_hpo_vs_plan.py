"""The pipeline's hyperparameter search against the hand-made per-data-set plans, on validation.

For each shared KT data set, as an operator would run it (a fresh AIVO_HOME with SQLite, no AIVO_*
setting but the thread count):

    aivo data import ../shared/data/kt/<name>/train.csv
    aivo pipeline run --no-promote --json        # AIVO_HPO_TRIALS / AIVO_HPO_TIMEOUT_S defaults (600 s)

and, on the same registry and the same split the pipeline makes (collect, scrub, stable 80/10/10
split by pseudonymous learner), the benchmark plan of benchmarks/kt_configs.py (its single-model
settings, no time limit) trained on the pipeline's training learners with early stopping on its
validation learners. The figure compared is the validation AUC (the search's best trial against
the plan); test.csv is never read. Results are kept in benchmarks/out/kt_defaults/hpo/.

    python benchmarks/kt_hpo_vs_plan.py                      # all three (2 processes, 1 thread each)
    python benchmarks/kt_hpo_vs_plan.py --datasets synthetic5 --no-write
    python benchmarks/kt_hpo_vs_plan.py --report
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
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

from bench import write_section  # noqa: E402
from kt_default_vs_dkt import KT_DATA, RESULTS, _cli, _user_env  # noqa: E402

DATASETS = ("statics", "assist2015", "synthetic5")
KEPT = HERE / "out" / "kt_defaults" / "hpo"
START, END = "<!-- kt-hpo:start -->", "<!-- kt-hpo:end -->"


def run_pipeline_search(dataset: str, home: str, threads: int) -> dict:
    env = _user_env(Path(home), threads)
    load = os.getloadavg()[0]
    imported, import_seconds = _cli(["data", "import", str(KT_DATA / dataset / "train.csv"), "--json"], env)
    report, seconds = _cli(["pipeline", "run", "--no-promote", "--json", "--reason", "kt_hpo_vs_plan"], env)
    search = report["search"]
    out = {"model": "pipeline", "dataset": dataset, "validation_auc": search["best_validation_auc"],
           "best_params": search["best_params"], "num_trials": search["num_trials"], "trials": search["trials"],
           "search_seconds": search["seconds"], "pipeline_seconds": round(seconds, 1),
           "import_seconds": round(import_seconds, 1), "rows_imported": imported["rows_inserted"],
           "split": report["split"], "internal_test_auc": report["test_metrics"]["metrics"]["auc"],
           "threads": threads, "load_before": round(load, 2)}
    return _keep(out)


def run_plan(dataset: str, home: str, threads: int) -> dict:
    """The plan's single model on the split the pipeline makes of the same registry."""
    import torch

    torch.set_num_threads(threads)
    os.environ.update(_user_env(Path(home), threads))
    from kt_configs import PLANS

    from aivo.brain.train import train_main_brain
    from aivo.config import Settings
    from aivo.registry import open_registry
    from aivo.services.pipeline import PipelineConfig, collect_interactions, scrub_log
    from aivo.training.splits import stable_split

    load = os.getloadavg()[0]
    settings = Settings()
    config = PipelineConfig.from_settings(settings)
    data, _ = scrub_log(collect_interactions(registry=open_registry(settings), config=config),
                        names=settings.pii_names)
    split = stable_split(data, fractions=config.fractions, salt=config.split_salt)
    plan = PLANS[dataset].config
    result = train_main_brain(train=split.train, validation=split.validation, config=plan, seed=config.seed)
    out = {"model": "plan", "dataset": dataset, "validation_auc": result.validation.auc,
           "best_epoch": result.best_epoch, "epochs_run": len(result.history),
           "train_seconds": round(result.seconds, 1), "split": split.sizes(), "config": plan.to_dict(),
           "threads": threads, "load_before": round(load, 2)}
    return _keep(out)


def _keep(out: dict) -> dict:
    out["measured"] = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    KEPT.mkdir(parents=True, exist_ok=True)
    (KEPT / f"{out['dataset']}-{out['model']}.json").write_text(json.dumps(out, indent=1))
    return out


def load_kept() -> dict[str, dict[str, dict]]:
    results: dict[str, dict[str, dict]] = {}
    for path in sorted(KEPT.glob("*.json")):
        record = json.loads(path.read_text())
        results.setdefault(record["dataset"], {})[record["model"]] = record
    return {d: results[d] for d in DATASETS if d in results}


def render(results: dict[str, dict[str, dict]], command: str) -> str:
    lines = [f"Rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the kept results "
             "(benchmarks/out/kt_defaults/hpo/). Reproduce: `" + command + "`", "",
             "`aivo pipeline run` with its defaults (AIVO_HPO_TRIALS, AIVO_HPO_TIMEOUT_S = 600 s) on the "
             "registry holding a data set's train.csv, against the hand-made plan of kt_configs.py trained on "
             "the same pipeline split (no time limit). Validation AUC on the pipeline's validation learners; "
             "one torch thread; the machine's 2 cores were shared with other jobs (load column).", "",
             "| data set | plan validation AUC (train time) | search: best validation AUC | difference | trials "
             "(complete / pruned) in the search time | best trial's settings | measured (load) |",
             "|---|---|---|---|---|---|---|"]
    for dataset in DATASETS:
        plan, search = results.get(dataset, {}).get("plan"), results.get(dataset, {}).get("pipeline")
        if not plan and not search:
            continue
        diff = search["validation_auc"] - plan["validation_auc"] if plan and search else None
        verdict = "" if diff is None else (" (met)" if diff >= 0 else f" (missed by {-diff:.4f})")
        states = [t.get("state", "complete") for t in search["trials"]] if search else []
        lines.append("| " + " | ".join([
            dataset,
            f"{plan['validation_auc']:.4f} ({plan['train_seconds']:.0f} s)" if plan else "-",
            f"{search['validation_auc']:.4f}" if search else "-",
            f"{diff:+.4f}{verdict}" if diff is not None else "-",
            (f"{states.count('complete')} / {states.count('pruned')} in {search['search_seconds']:.0f} s"
             if search else "-"),
            (json.dumps(search["best_params"]) if search else "-"),
            "; ".join(f"{r['model']} {r['measured']} ({r['load_before']})" for r in (plan, search) if r)]) + " |")
    lines += ["", "Trials:", "```",
              json.dumps({d: r["pipeline"]["trials"] for d, r in results.items() if "pipeline" in r}, indent=1),
              "```"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--models", nargs="+", default=["pipeline", "plan"], choices=["pipeline", "plan"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    command = "python " + " ".join([str(Path(__file__).relative_to(REPO)), *sys.argv[1:]])
    if not args.report:
        started = time.perf_counter()
        homes = {d: tempfile.mkdtemp(prefix=f"aivo-hpo-{d}-") for d in args.datasets}
        try:
            with ProcessPoolExecutor(max_workers=args.parallel,
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
                # the plan reads the registry the pipeline's import fills: import first (in the pipeline job)
                pending = {}
                for d in args.datasets:
                    if "pipeline" in args.models:
                        pending[pool.submit(run_pipeline_search, d, homes[d], args.threads)] = (d, "pipeline")
                    elif "plan" in args.models:
                        env = _user_env(Path(homes[d]), args.threads)
                        _cli(["data", "import", str(KT_DATA / d / "train.csv"), "--json"], env)
                        pending[pool.submit(run_plan, d, homes[d], args.threads)] = (d, "plan")
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        d, m = pending.pop(future)
                        r = future.result()
                        print(f"[{time.perf_counter() - started:.0f}s] {d} {m}: validation AUC "
                              f"{r['validation_auc']:.4f}", flush=True)
                        if m == "pipeline" and "plan" in args.models:
                            pending[pool.submit(run_plan, d, homes[d], args.threads)] = (d, "plan")
        finally:
            for home in homes.values():
                shutil.rmtree(home, ignore_errors=True)
    text = render(load_kept(), command if not args.report else "python benchmarks/kt_hpo_vs_plan.py")
    print("\n" + text)
    if not args.no_write:
        write_section(start=START, end=END, body=text)
        print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
