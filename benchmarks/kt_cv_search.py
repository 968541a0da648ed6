"""Cross-validated comparison of Main Brain settings on a KT data set's training learners only.

Each variant trains the benchmark plan's fold members (member m holds out fold m of the same
fixed shuffle that kt_benchmark.py uses, with the same seeds) and is scored by its members'
validation AUC on their held-out folds. The test file is never read, so settings can be chosen
here without looking at the test learners.

    python benchmarks/kt_cv_search.py --dataset statics --folds 0 1 2 3 4 \
        --variant '{}' --variant '{"item_response_embedding": true}'
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))


def _fold_member(dataset: str, overrides: dict, seed: int, member: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from kt_benchmark import KT_DATA, _fold_split
    from kt_configs import PLANS

    from aivo.brain.train import train_main_brain
    from aivo.data.kt_format import read_kt_lines

    plan = PLANS[dataset]
    train = read_kt_lines(KT_DATA / dataset / "train.csv")
    part_train, part_val = _fold_split(train, plan.validation_folds or 10, seed, member)
    result = train_main_brain(train=part_train, validation=part_val, config=replace(plan.config, **overrides),
                              seed=seed + member)
    return {"member": member, "validation_auc": round(result.validation.auc, 4), "best_epoch": result.best_epoch,
            "epochs_run": len(result.history), "seconds": round(result.seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="statics")
    parser.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--variant", action="append", required=True, help="JSON object of BrainConfig overrides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    for text in args.variant:
        overrides = json.loads(text)
        started = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
            members = list(pool.map(_fold_member, [args.dataset] * len(args.folds), [overrides] * len(args.folds),
                                    [args.seed] * len(args.folds), args.folds))
        mean_auc = sum(m["validation_auc"] for m in members) / len(members)
        mean_seconds = sum(m["seconds"] for m in members) / len(members)
        print(json.dumps({"dataset": args.dataset, "variant": overrides, "mean_validation_auc": round(mean_auc, 5),
                          "mean_member_seconds": round(mean_seconds, 1),
                          "wall_seconds": round(time.perf_counter() - started, 1), "members": members,
                          "measured": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"}), flush=True)


if __name__ == "__main__":
    main()
