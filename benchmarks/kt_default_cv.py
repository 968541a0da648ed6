"""Choose the Main Brain's default settings: one setting for every data set, on validation only.

Each candidate is a complete set of the knobs that differ between the candidates (the other
BrainConfig fields keep their dataclass defaults, which no candidate changes), so a candidate
means the same thing before and after the defaults move. A candidate is trained on folds of the
training learners of each shared KT data set: fold f holds out learners f, f + k, f + 2k, ... of
one fixed shuffle (k = --num-folds; the model trains on the other (k - 1) / k, as `aivo
train-main` trains on 80% of its file) and is scored by the validation AUC of the held-out
learners. `test.csv` is never read.

Candidates are ranked per (data set, fold) -- the folds are paired: the same learners and seed
for every candidate -- and by their mean rank and mean and worst validation AUC over the data sets.
Every (candidate, data set, fold) result is kept in benchmarks/out/kt_defaults/cv/ as soon as it
finishes; a re-run skips what is kept, so a search can be extended fold by fold (successive
halving: fold 0 for every candidate, then more folds for the best few).

    python benchmarks/kt_default_cv.py --candidates current shared --folds 0    # run (2 processes)
    python benchmarks/kt_default_cv.py --report                                 # table of kept results
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from bench import RESULTS, machine, write_section  # noqa: E402

KEPT = HERE / "out" / "kt_defaults" / "cv"
START, END = "<!-- kt-defaults-cv:start -->", "<!-- kt-defaults-cv:end -->"
DATASETS = ("statics", "assist2015", "synthetic5")

# The knobs that differ between candidates, spelled out in full for every candidate.
_CURRENT = dict(evidence_kind="free", evidence_normalize="none", weight_average_decay=0.0, learning_rate=1e-3,
                batch_size=64, max_epochs=30, patience=3, patience_steps=0)
# What the per-data-set plans of kt_configs.py share (residual evidence, weight average 0.99,
# learning rate 2e-3) plus the evidence normalization two of the three plans use.
_SHARED = dict(_CURRENT, evidence_kind="residual", evidence_normalize="mean", weight_average_decay=0.99,
               learning_rate=2e-3)
_LONG = dict(patience=5, max_epochs=40)  # flat validation curves (synthetic5's plan waits 5 epochs)
CANDIDATES: dict[str, dict] = {
    "current": _CURRENT,  # the defaults before issue 15
    "shared": _SHARED,
    "shared_p5": dict(_SHARED, **_LONG),
    # synthetic5's plan keeps the sums unnormalized, the others divide by the count: in between.
    "shared_sqrt": dict(_SHARED, evidence_normalize="sqrt"),
    "shared_sqrt_p5": dict(_SHARED, evidence_normalize="sqrt", **_LONG),
    "shared_none": dict(_SHARED, evidence_normalize="none"),
    "shared_none_p5": dict(_SHARED, evidence_normalize="none", **_LONG),
    # small data gets few optimizer steps per epoch at batch 64 (STATICS: about 10)
    "shared_b32": dict(_SHARED, batch_size=32),
    "shared_b32_p5": dict(_SHARED, batch_size=32, **_LONG),
    "shared_lr1e3_p5": dict(_SHARED, learning_rate=1e-3, **_LONG),
}
# Training does not depend on the patience or the epoch limit (a constant learning rate; the
# stopping rule only reads the validation curve), so a run with patience 5 and 40 epochs also
# answers patience 3 and 30 epochs: stop where that rule stops on the same curve.
_STOP_KNOBS = ("patience", "max_epochs")


def _same_training(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k not in _STOP_KNOBS} == {k: v for k, v in b.items() if k not in _STOP_KNOBS}


def stop_epoch(curve: list[float], patience: int, max_epochs: int) -> tuple[int, int]:
    """(epochs run, best epoch) of early stopping with `patience` on a validation-AUC curve."""
    best, best_epoch = -1.0, 0
    for epoch, auc in enumerate(curve[:max_epochs], start=1):
        if auc > best:
            best, best_epoch = auc, epoch
        elif epoch - best_epoch >= patience:
            return epoch, best_epoch
    return min(len(curve), max_epochs), best_epoch


def answer(candidate: dict, run: dict) -> dict | None:
    """What `candidate` would have given, read from a kept `run` of the same training (or None).
    A run answers a candidate that stops no later: the candidate's patience and epoch limit are
    at most the run's (and the run did not end before the candidate would have)."""
    settings = run["settings"]
    if not _same_training(candidate, settings):
        return None
    if candidate["patience"] > settings["patience"] or candidate["max_epochs"] > settings["max_epochs"]:
        return None
    curve = run["curve"]
    epochs, best_epoch = stop_epoch(curve, candidate["patience"], candidate["max_epochs"])
    ran, _ = stop_epoch(curve, settings["patience"], settings["max_epochs"])
    if epochs > ran:  # pragma: no cover - cannot happen with the checks above
        return None
    return {**run, "validation_auc": max(curve[:epochs]), "best_epoch": best_epoch, "epochs_run": epochs,
            "seconds": run["seconds"] * epochs / len(curve), "derived_from": run["run_name"]}


def _fold_split(train, num_folds: int, seed: int, fold: int):
    """Fold `fold` of one fixed shuffle of the training learners as validation, the rest as training."""
    import numpy as np

    ids = np.array(sorted(set(map(str, train.frame["learner_id"].unique()))), dtype=object)
    ids = ids[np.random.default_rng(seed).permutation(len(ids))]
    held = set(ids[fold::num_folds])
    return train.select_learners([i for i in ids if i not in held]), train.select_learners(sorted(held))


def _key(candidate: str, dataset: str, fold: int) -> Path:
    return KEPT / f"{candidate}--{dataset}--fold{fold}.json"


def run_one(candidate: str, dataset: str, fold: int, num_folds: int, seed: int) -> dict:
    """Train one candidate's settings on one fold (in a worker process, one torch thread)."""
    import torch

    torch.set_num_threads(1)
    from kt_benchmark import KT_DATA

    from aivo.brain.config import BrainConfig
    from aivo.brain.train import train_main_brain
    from aivo.data.kt_format import read_kt_lines

    train = read_kt_lines(KT_DATA / dataset / "train.csv")
    part_train, part_val = _fold_split(train, num_folds, seed, fold)
    load = os.getloadavg()[0]
    result = train_main_brain(train=part_train, validation=part_val, config=BrainConfig(**CANDIDATES[candidate]),
                              seed=seed + fold)
    out = {"candidate": candidate, "run_name": candidate, "dataset": dataset, "fold": fold, "num_folds": num_folds,
           "seed": seed + fold,
           "settings": CANDIDATES[candidate], "validation_auc": round(result.validation.auc, 5),
           "best_epoch": result.best_epoch, "epochs_run": len(result.history), "seconds": round(result.seconds, 1),
           "curve": [round(e.validation_auc, 4) for e in result.history],
           # validation before the context windows of aivo.brain.context (2026-12-06) scored chunks
           "validation_layout": "context", "ema_warmup": True, "load_before": round(load, 2),
           "measured": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"}
    KEPT.mkdir(parents=True, exist_ok=True)
    _key(candidate, dataset, fold).write_text(json.dumps(out, indent=1))
    return out


def load_kept() -> list[dict]:
    runs = [json.loads(p.read_text()) for p in sorted(KEPT.glob("*.json"))]
    for run in runs:
        run.setdefault("run_name", run["candidate"])
    return runs


def candidate_results(runs: list[dict]) -> list[dict]:
    """Every candidate's result per (data set, fold) that some kept run answers."""
    out = []
    for name, settings in CANDIDATES.items():
        cells = {}
        for run in runs:
            derived = answer(settings, run)
            cell = (run["dataset"], run["fold"])
            if derived is not None and cell not in cells:
                cells[cell] = {**derived, "candidate": name}
        out.extend(cells.values())
    return out


def runs_needed(candidates: list[str], datasets: list[str], folds: list[int], runs: list[dict]) -> list[tuple]:
    """(candidate, data set, fold) to train: those no kept run answers; a candidate with a
    patience-5 sibling of the same training is trained as that sibling, which answers both."""
    todo = []
    for fold in folds:
        for dataset in datasets:
            for name in candidates:
                if any(answer(CANDIDATES[name], r) for r in runs if (r["dataset"], r["fold"]) == (dataset, fold)):
                    continue
                longest = max((n for n in CANDIDATES if _same_training(CANDIDATES[n], CANDIDATES[name])),
                              key=lambda n: (CANDIDATES[n]["patience"], CANDIDATES[n]["max_epochs"]))
                if (longest, dataset, fold) not in todo:
                    todo.append((longest, dataset, fold))
    return todo


def table(results: list[dict], *, folds: list[int] | None = None,
          candidates: list[str] | None = None) -> tuple[list[dict], str]:
    """Rank candidates on the (data set, fold) cells that every listed candidate has finished."""
    import numpy as np

    by = {(r["candidate"], r["dataset"], r["fold"]): r for r in results
          if (folds is None or r["fold"] in folds) and (candidates is None or r["candidate"] in candidates)}
    candidates = sorted({c for c, _, _ in by})
    cells = sorted({(d, f) for _, d, f in by})
    # compare only candidates on cells they all have: keep the candidates with the most cells
    complete = {c: {(d, f) for (cc, d, f) in by if cc == c} for c in candidates}
    most = max((len(v) for v in complete.values()), default=0)
    candidates = [c for c in candidates if len(complete[c]) == most]
    cells = [cell for cell in cells if all(cell in complete[c] for c in candidates)]
    rows = []
    ranks = {c: [] for c in candidates}
    for d, f in cells:
        aucs = {c: by[(c, d, f)]["validation_auc"] for c in candidates}
        order = sorted(candidates, key=lambda c: -aucs[c])
        for c in candidates:  # average rank on ties
            tied = [i for i, o in enumerate(order) if aucs[o] == aucs[c]]
            ranks[c].append(1 + float(np.mean(tied)))
    for c in candidates:
        per_dataset = {d: float(np.mean([by[(c, d, f)]["validation_auc"] for dd, f in cells if dd == d]))
                       for d in DATASETS if any(dd == d for dd, _ in cells)}
        seconds = {d: float(np.mean([by[(c, d, f)]["seconds"] for dd, f in cells if dd == d])) for d in per_dataset}
        rows.append({"candidate": c, "mean_rank": float(np.mean(ranks[c])) if ranks[c] else None,
                     "mean_auc": float(np.mean(list(per_dataset.values()))) if per_dataset else None,
                     "per_dataset": per_dataset, "seconds": seconds, "settings": CANDIDATES.get(c)})
    rows.sort(key=lambda r: (r["mean_rank"], -r["mean_auc"]))
    folds_used = sorted({f for _, f in cells})
    head = ("| candidate | mean rank | mean AUC | " + " | ".join(f"{d} AUC (s)" for d in DATASETS) + " |\n"
            + "|---|---|---|" + "---|" * len(DATASETS) + "\n")
    body = ""
    for r in rows:
        cols = [f"{r['per_dataset'][d]:.4f} ({r['seconds'][d]:.0f})" if d in r["per_dataset"] else "-"
                for d in DATASETS]
        body += f"| {r['candidate']} | {r['mean_rank']:.2f} | {r['mean_auc']:.4f} | " + " | ".join(cols) + " |\n"
    return rows, f"Folds {folds_used} ({len(cells)} cells: data set x fold)\n\n" + head + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", nargs="+", default=[], choices=sorted(CANDIDATES))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--folds", nargs="+", type=int, default=[0])
    parser.add_argument("--num-folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--report", action="store_true", help="Only print the table of the kept results.")
    parser.add_argument("--write", action="store_true",
                        help="Also put the table into benchmarks/RESULTS.md (kt-defaults-cv block).")
    args = parser.parse_args()
    command = "python " + " ".join([str(Path(__file__).relative_to(HERE.parent)), *sys.argv[1:]])
    jobs = runs_needed(args.candidates, args.datasets, args.folds, load_kept())
    # longest first (assist2015, then statics, then synthetic5) so the two workers finish together
    jobs.sort(key=lambda j: DATASETS.index(j[1]) if j[1] != "assist2015" else -1)
    if jobs and not args.report:
        print(f"{len(jobs)} runs to do ({args.parallel} at a time); kept in {KEPT}", flush=True)
        started = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = {pool.submit(run_one, c, d, f, args.num_folds, args.seed): (c, d, f) for c, d, f in jobs}
            done = 0
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    c, d, f = pending.pop(future)
                    r = future.result()
                    done += 1
                    print(f"[{done}/{len(jobs)} {time.perf_counter() - started:.0f}s] {c} {d} fold {f}: "
                          f"val AUC {r['validation_auc']:.4f}, best epoch {r['best_epoch']}/{r['epochs_run']}, "
                          f"{r['seconds']:.0f}s", flush=True)
    results = candidate_results(load_kept())
    rows, text = table(results, candidates=args.candidates or None)
    print("\n" + text)
    if args.write:
        write_section(start=START, end=END, body=render(rows, text, results, command))
        print(f"\nwrote {RESULTS}")


def render(rows: list[dict], text: str, results: list[dict], command: str) -> str:
    """The RESULTS.md block: how the table was made, the table, and every candidate's settings."""
    used = [r for r in results if r["candidate"] in {row["candidate"] for row in rows}]
    trained = {(r["run_name"], r["dataset"], r["fold"]): r for r in used}.values()
    measured = sorted(r["measured"] for r in trained)
    loads = [r["load_before"] for r in trained]
    settings = "\n".join(f"* {row['candidate']}: {json.dumps(row['settings'])}" for row in rows)
    return (f"Rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the kept results "
            f"(benchmarks/out/kt_defaults/cv/); machine: {machine()}; runs measured {measured[0]} to "
            f"{measured[-1]}, 1-minute load average before a run {min(loads):.1f} to {max(loads):.1f} (the 2 cores "
            "were shared with other jobs: the seconds are pessimistic; the AUCs do not depend on the load).\n"
            f"Reproduce: `{command}`\n\n"
            "Validation AUC of the held-out fold of the training learners (test.csv is never read); a fold "
            "trains on the other learners with early stopping on the held-out ones, one torch thread. The "
            "same folds and seeds for every candidate; candidates are ranked per (data set, fold). A "
            "patience-3 candidate is read off the validation curve of its patience-5 sibling (same training: "
            "the stopping rule only reads the curve). Columns: mean validation AUC (mean seconds per fold).\n\n"
            + text.strip() + "\n\nCandidates (the knobs that differ; every other field is BrainConfig's "
            "default):\n\n" + settings)


if __name__ == "__main__":
    main()
