"""CPU time of one uncached recommendation under each served policy (aivo-gain, aivo-target).

Uses the simulator Main Brain of benchmarks/policy_closed_loop.py (trained there, or here when
missing: benchmarks/out/policy_brains) and simulated learners with `--interactions` answers; times
`recommend_with_brain` (what the API computes on a cache miss) as process CPU time, so that a
loaded machine inflates it less than wall time.

    python benchmarks/policy_cold_cost.py --learners 20 --interactions 60
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import load_average  # noqa: E402

from aivo.brain.recommend import PolicyConfig  # noqa: E402
from aivo.data.schema import make_log  # noqa: E402
from aivo.data.simulator import SimulatorConfig, simulate_cohort  # noqa: E402
from aivo.services.policy_evaluation import PolicyEvaluationSpec, prepare_brain  # noqa: E402
from aivo.services.recommendations import recommend_with_brain  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=20)
    parser.add_argument("--interactions", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    prepared = prepare_brain(PolicyEvaluationSpec(), "simulator",
                             cache_dir=Path(__file__).resolve().parent / "out" / "policy_brains")
    cohort = simulate_cohort(config=SimulatorConfig(num_learners=args.learners,
                                                    interactions_per_learner=args.interactions), seed=1)
    histories = [make_log(g.reset_index(drop=True)) for _, g in cohort.log.frame.groupby("learner_id")]
    now = datetime(2024, 12, 1, tzinfo=timezone.utc)
    policies = ("aivo-target", "aivo-gain")
    for history in histories[:2]:  # warm-up: catalogs and caches
        for name in policies:
            recommend_with_brain(brain=prepared.brain, learner_id="x", history=history, policy=PolicyConfig(),
                                 now=now, policy_name=name)
    times = {name: [] for name in policies}
    for history in histories:
        for name in policies:
            tick = time.process_time()
            recommend_with_brain(brain=prepared.brain, learner_id="x", history=history, policy=PolicyConfig(),
                                 now=now, policy_name=name)
            times[name].append(time.process_time() - tick)
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average {load_average():.1f}; "
          f"{args.learners} learners x {args.interactions} answers")
    for name, values in times.items():
        print(f"{name}: CPU ms per cold recommendation median {1000 * np.median(values):.1f}, "
              f"p90 {1000 * np.percentile(values, 90):.1f}")


if __name__ == "__main__":
    main()
