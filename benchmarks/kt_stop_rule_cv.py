"""Choose the Main Brain's early-stopping rule on validation only: `aivo train-main` replayed on folds.

Issue 15: the default Main Brain stopped STATICS at epoch 6 (best epoch 3) on train-main's 23
validation learners. Which stopping rule works on small data sets is decided here without test.csv:
fold f of one fixed shuffle of a data set's train.csv learners (kt_default_cv's folds) plays the
user's test file; the other learners play the user's train.csv, which train-main splits 80/10/10 by
learner (the same `split_by_learner` call and seed) and trains on with early stopping on its
validation learners. Every epoch's weights that early stopping would keep (the weight average) are
scored on the held-out fold as `aivo evaluate` scores a file, so one run that never stops early
(patience = the epoch limit) answers every stopping rule that reads the validation curve: the rule
picks its epoch on the curve of the train-main validation learners, and its figure is the held-out
AUC of that epoch's weights. A larger validation share changes the training learners, so each share
is its own run. Fold -1 is train-main's own split of the whole train.csv (train.csv's 80/10/10 by
learner, as `aivo train-main --data train.csv` makes it), scored on its 10% test learners.

    python benchmarks/kt_stop_rule_cv.py --datasets statics --folds 0 1 2     # run (one process)
    python benchmarks/kt_stop_rule_cv.py --report                              # table of kept runs

Runs are kept in benchmarks/out/kt_defaults/stop/ as soon as each finishes; a re-run skips them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from bench import RESULTS, machine, write_section  # noqa: E402
from kt_default_cv import _fold_split  # noqa: E402

KEPT = HERE / "out" / "kt_defaults" / "stop"
START, END = "<!-- kt-stop-rule:start -->", "<!-- kt-stop-rule:end -->"
DATASETS = ("statics", "assist2015", "synthetic5")


def _steps_rule(horizon: int, floor: int = 3):
    """Patience of `floor` epochs, or of as many epochs as `horizon` optimizer steps take if more."""
    return lambda steps_per_epoch: max(floor, math.ceil(horizon / steps_per_epoch))


# name -> (validation share of train-main's split, patience as a function of the steps per epoch,
#          epoch limit, first epoch at which stopping may happen)
RULES: dict[str, tuple[float, object, int, int]] = {
    "patience3 (before)": (0.1, lambda s: 3, 30, 1),
    "patience5": (0.1, lambda s: 5, 30, 1),
    "patience10": (0.1, lambda s: 10, 30, 1),
    "min10+patience3": (0.1, lambda s: 3, 30, 10),
    "patience>=100 steps": (0.1, _steps_rule(100), 30, 1),
    "patience>=200 steps": (0.1, _steps_rule(200), 30, 1),
    "val20%+patience3": (0.2, lambda s: 3, 30, 1),
    "val20%+patience>=100 steps": (0.2, _steps_rule(100), 30, 1),
}


def _key(dataset: str, fold: int, share: float) -> Path:
    return KEPT / f"{dataset}--fold{fold}--val{int(round(share * 100))}.json"


def steps_per_epoch(train, config) -> int:
    """Optimizer steps of one epoch (batches of the training chunks at the configured batch size)."""
    from aivo.brain.batching import bucketed_batches, encode_log
    from aivo.brain.labels import derive_label_tables
    from aivo.brain.vocab import BrainVocab

    vocab = BrainVocab.build(train)
    tables = derive_label_tables(train, vocab, num_levels=config.num_difficulty_levels,
                                 prior_count=config.difficulty_prior_count)
    encoded = encode_log(train, vocab=vocab, tables=tables, config=config)
    return len(bucketed_batches(encoded.chunk_length, batch_size=config.batch_size))


def run_one(dataset: str, fold: int, share: float, *, num_folds: int, seed: int, max_epochs: int) -> dict:
    """train-main on the learners outside `fold` (validation share `share`), never stopping early;
    every epoch scored on the train-main validation learners and on the held-out fold."""
    import torch

    torch.set_num_threads(1)
    from aivo.brain.batching import encode_log
    from aivo.brain.config import BrainConfig
    from aivo.brain.train import scored_probabilities, train_main_brain
    from aivo.config import Settings
    from aivo.data.metrics import binary_metrics
    from aivo.data.readers import read_interactions
    from aivo.data.splits import split_by_learner
    from kt_benchmark import KT_DATA

    data = read_interactions(KT_DATA / dataset / "train.csv")
    split_seed = Settings().seed  # what train-main uses when AIVO_SEED is not set
    if fold >= 0:
        users_file, held_out = _fold_split(data, num_folds, seed, fold)
        split = split_by_learner(users_file, fractions=(1.0 - 0.1 - share, share, 0.1), seed=split_seed)
    else:  # train-main's own split of the whole train.csv, scored on its 10% test learners
        split = split_by_learner(data, fractions=(1.0 - 0.1 - share, share, 0.1), seed=split_seed)
        held_out = split.test
    config = BrainConfig(max_epochs=max_epochs, patience=max_epochs)  # the defaults, never stopping early
    held_aucs: list[float] = []
    cache: dict = {}

    def monitor(record, brain) -> None:
        if "encoded" not in cache:  # the vocabulary and tables are fixed for the run: encode once
            cache["encoded"] = encode_log(held_out, vocab=brain.vocab, tables=brain.tables, config=brain.config,
                                          layout="context")
        encoded = cache["encoded"]
        prob = scored_probabilities(brain.model, encoded)
        keep = prob == prob
        held_aucs.append(round(binary_metrics(encoded.correct[keep], prob[keep]).auc, 5))

    load = os.getloadavg()[0]
    started = time.perf_counter()
    result = train_main_brain(train=split.train, validation=split.validation, config=config, seed=split_seed,
                              monitor=monitor)
    out = {"dataset": dataset, "fold": fold, "num_folds": num_folds, "fold_seed": seed, "validation_share": share,
           "split": split.sizes(), "held_out_learners": int(held_out.frame["learner_id"].nunique()),
           "steps_per_epoch": steps_per_epoch(split.train, config),
           "validation_curve": [round(e.validation_auc, 5) for e in result.history], "held_out_curve": held_aucs,
           "seconds": round(time.perf_counter() - started, 1), "load_before": round(load, 2),
           "measured": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"}
    KEPT.mkdir(parents=True, exist_ok=True)
    _key(dataset, fold, share).write_text(json.dumps(out, indent=1))
    return out


def rule_outcome(run: dict, rule: tuple) -> dict | None:
    """(best epoch, epochs run, held-out AUC) of a rule on a kept run, or None if the run does not answer it."""
    share, patience_of, max_epochs, min_epochs = rule
    if abs(run["validation_share"] - share) > 1e-9:
        return None
    curve = run["validation_curve"]
    patience = patience_of(run["steps_per_epoch"])
    epochs, best = _stop_after(curve, patience, max_epochs, min_epochs)
    if epochs > len(curve):
        return None
    return {"best_epoch": best, "epochs_run": epochs, "held_out_auc": run["held_out_curve"][best - 1],
            "validation_auc": curve[best - 1], "patience": patience}


def _stop_after(curve: list[float], patience: int, max_epochs: int, min_epochs: int) -> tuple[int, int]:
    """Early stopping that may only stop from epoch `min_epochs` on."""
    best, best_epoch = -1.0, 0
    for epoch, auc in enumerate(curve[:max_epochs], start=1):
        if auc > best:
            best, best_epoch = auc, epoch
        elif epoch - best_epoch >= patience and epoch >= min_epochs:
            return epoch, best_epoch
    return min(len(curve), max_epochs), best_epoch


def table(runs: list[dict]) -> str:
    import numpy as np

    cells = sorted({(r["dataset"], r["fold"]) for r in runs})
    names = [f"{d} fold {f}" if f >= 0 else f"{d} train-main split" for d, f in cells]
    lines = ["| rule | " + " | ".join(names) + " | mean held-out AUC over cells |",
             "|---|" + "---|" * len(cells) + "---|"]
    for name, rule in RULES.items():
        cols, aucs = [], []
        for d, f in cells:
            outs = [o for r in runs if (r["dataset"], r["fold"]) == (d, f) for o in [rule_outcome(r, rule)] if o]
            if outs:
                o = outs[0]
                cols.append(f"{o['held_out_auc']:.4f} ({o['best_epoch']}/{o['epochs_run']}, p{o['patience']})")
                aucs.append(o["held_out_auc"])
            else:
                cols.append("-")
        if not aucs:  # no kept run answers this rule (e.g. a validation share not run)
            continue
        mean = f"{np.mean(aucs):.4f}" if len(aucs) == len(cells) else "-"
        lines.append(f"| {name} | " + " | ".join(cols) + f" | {mean} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["statics"], choices=DATASETS)
    parser.add_argument("--folds", nargs="+", type=int, default=[0])
    parser.add_argument("--shares", nargs="+", type=float, default=[0.1, 0.2])
    parser.add_argument("--num-folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--report", action="store_true", help="Only print the table of the kept runs.")
    parser.add_argument("--write", action="store_true", help="Also put the table into benchmarks/RESULTS.md.")
    args = parser.parse_args()
    if not args.report:
        for fold in args.folds:
            for dataset in args.datasets:
                for share in args.shares:
                    if _key(dataset, fold, share).exists():
                        continue
                    r = run_one(dataset, fold, share, num_folds=args.num_folds, seed=args.seed,
                                max_epochs=args.max_epochs)
                    print(f"{dataset} fold {fold} val share {share}: {r['seconds']:.0f}s (load {r['load_before']}), "
                          f"{r['steps_per_epoch']} steps/epoch\n  validation {r['validation_curve']}\n"
                          f"  held out   {r['held_out_curve']}", flush=True)
    runs = [json.loads(p.read_text()) for p in sorted(KEPT.glob("*.json"))]
    text = table(runs)
    print("\n" + text)
    if args.write:
        measured = sorted(r["measured"] for r in runs)
        loads = [r["load_before"] for r in runs]
        command = "python " + " ".join([str(Path(__file__).relative_to(HERE.parent)), *sys.argv[1:]])
        write_section(start=START, end=END, body=(
            f"Rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the kept runs "
            f"(benchmarks/out/kt_defaults/stop/); machine: {machine()}; runs measured {measured[0]} to "
            f"{measured[-1]}, 1-minute load before a run {min(loads):.1f} to {max(loads):.1f}.\n"
            f"Reproduce: `{command}`\n\n"
            "Held-out AUC (test.csv never read) of the weights each stopping rule keeps, when `aivo train-main` "
            "trains on the learners outside a fold and stops on its own validation learners; cells: AUC (best "
            "epoch / epochs run, patience in epochs).\n\n" + text))
        print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
