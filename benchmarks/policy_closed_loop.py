"""Closed-loop learning outcomes: recommendation policies side by side on simulated learners.

For each learner model (the project's simulator, and BKT with forgetting) a Main Brain is trained
on a separate simulated history, then the same simulated learners practise N items under each
policy (fixed curriculum, random within grade, BKT mastery learning, AIVO's current policy,
AIVO's improved policy). Every step asks the policy for the next item through the service call
the recommendations API makes; the learner answers from its hidden state; post-tests on the
learner's grade-level items come from the hidden truth (aivo.services.policy_evaluation).

Target (issue 15): aivo-gain beats every baseline on post-test mastery after 100 items on both
learner models, with non-overlapping 95% confidence intervals; no subgroup (grade,
accommodation profile) served worse than by the fixed curriculum.

    python benchmarks/policy_closed_loop.py                                 # 1,000 learners per arm
    python benchmarks/policy_closed_loop.py --learners 100 --items 20,50    # quick look
    python benchmarks/policy_closed_loop.py --write-results                 # also update RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import load_average, machine, write_section  # noqa: E402

from aivo.services.policy_evaluation import (  # noqa: E402
    DEFAULT_POLICIES, PolicyEvaluationSpec, evaluate_policies, save_report)

OUT = Path(__file__).resolve().parent / "out"


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:
        return f"load average {load_average():.2f}"


def _ci(c: dict, digits: int = 3) -> str:
    return f"{c['mean']:.{digits}f} [{c['low']:.{digits}f}, {c['high']:.{digits}f}]"


def report(summary: dict, *, command: str, began: str, load_before: str, load_after: str, seconds: float,
           plot: str) -> str:
    spec = summary["spec"]
    lines = [
        "### Closed-loop learning outcomes: recommendation policies on simulated learners",
        "",
        f"Measured {began} on {machine()}; this script alone, torch on one thread, at low priority (`nice`), "
        f"sharing the two cores with other jobs. Machine load before: `{load_before}`; after: `{load_after}`. "
        f"Wall time {seconds / 60:.0f} min.",
        f"Reproduce: `{command}`",
        "",
        f"Per learner model a Main Brain is trained on a separate simulated history ({spec['brain_learners']:,} "
        f"learners x {spec['brain_interactions']} interactions, at most {spec['brain_epochs']} epochs), then the "
        f"same {spec['num_learners']:,} simulated learners practise under each policy (paired: same learners, "
        "sessions and answer seed). The first 3 items are a placement (one per subject), the same for every "
        "policy. Post-test: the expected score, from the hidden truth, on every item of the learner's grade "
        f"(teaching nothing); delayed: the same {spec['delay_days']:g} days later; a skill is mastered when its "
        f"true mean P(correct) >= {spec['mastery_p']}. 95% confidence intervals (normal) over learners.",
        "",
    ]
    for model, entry in summary["learner_models"].items():
        brain = summary["brains"][model]
        auc = brain["validation_auc"]
        lines += [f"**Learner model `{model}`** (Main Brain validation AUC {auc:.3f}, trained in "
                  f"{brain['train_seconds']:.0f} s)", ""]
        ns = sorted(int(k) for k in next(iter(entry["policies"].values()))["post_test"])
        header = ["policy"] + [f"post-test after {n}" for n in ns] + \
                 ["gain after 100 (post - pre)", f"delayed after {ns[-1]} (+{spec['delay_days']:g} d)",
                  "skills mastered after 100", "items to mastery", "ms per learner-step (batched)"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, row in entry["policies"].items():
            label = f"`{name}`" + (f" ({row['learners']:,} learners)" if row["learners"] != spec["num_learners"] else "")
            cells = [label] + [_ci(row["post_test"][str(n)]) for n in ns]
            cells.append(_ci(row["learning_gain"]["100"], 4) if "100" in row["learning_gain"] else "-")
            cells.append(_ci(row["delayed_post_test"][str(ns[-1])]))
            cells.append(_ci(row["skills_mastered"]["100"]) if "100" in row["skills_mastered"] else "-")
            cells.append(f"{row['items_to_mastery']['mean']:.1f}")
            cells.append(f"{row['recommend_ms_per_learner_step']:.2f}")
            lines.append("| " + " | ".join(cells) + " |")
        effects = entry.get("effects")
        if effects:
            lines += ["", f"`{effects['policy']}` against each policy after {effects['items']} items: ", "",
                      "| against | difference (95% CI; paired unless marked) | Cohen's d | CIs of the post-test apart | "
                      "CIs of the gain apart |", "|---|---|---|---|---|"]
            for name, e in effects["against"].items():
                mark = "" if e["difference"].get("paired", True) else " (unpaired)"
                lines.append(f"| `{name}` | {_ci(e['difference'], 4)}{mark} | {e['cohens_d']:+.3f} | "
                             f"{'yes' if e['non_overlapping_ci'] else 'no'} | "
                             f"{'yes' if e['gain_non_overlapping_ci'] else 'no'} |")
            verdict = "met" if effects["beats_every_baseline"] else "MISSED"
            lines += ["", f"Target (non-overlapping 95% CIs of the post-test after {effects['items']} items "
                          f"against every baseline): **{verdict}**. On the learning gain (post - pre, the same "
                          f"learners' pre-test removed): "
                          f"{'met' if effects['beats_every_baseline_on_gain'] else 'missed'}."]
        sub = entry.get("subgroups")
        if sub:
            worse = ", ".join(sub["significantly_worse"]) or "none"
            lower = ", ".join(sub["lower_mean"]) or "none"
            lines += ["", f"Subgroups (`{sub['reference']}` as reference, after {sub['items']} items, paired "
                          f"difference aivo-gain - {sub['reference']}): significantly worse (95% CI below 0): "
                          f"**{worse}**; mean below 0 but not significant: {lower}.", ""]
            for column, groups in sub["groups"].items():
                cells = [f"{v} ({g['difference']['n']}): {g['difference']['mean']:+.4f} "
                         f"[{g['difference']['low']:+.4f}, {g['difference']['high']:+.4f}]"
                         for v, g in groups.items()]
                lines.append(f"- by {column}: " + "; ".join(cells))
        lines.append("")
    lines += [f"Mastery against items practised, one line per policy (95% CI bands): `{plot}` "
              f"(![mastery vs items]({plot}))", "",
              "Reading the tables: the post-test CIs are wide because learners differ far more from one another "
              "(standard deviation of the score about 0.15) than any policy moves them in 100 items; the paired "
              "differences and the learning gain (the same learner's pre-test removed) separate policies much "
              "more finely. \"Items to mastery\" averages, over the skills a learner mastered during practice, the "
              "item count at which each was first mastered: a policy that masters more skills late scores higher "
              "there. An arm marked with fewer learners ran on another draw of learners (it costs about 10 ms "
              "per learner and step: the Main Brain scores every item of a four-grade band) and is compared "
              "unpaired.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=1000)
    parser.add_argument("--items", default="50,100,200")
    parser.add_argument("--policies", default=",".join(DEFAULT_POLICIES))
    parser.add_argument("--models", default="simulator,bkt-forgetting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--brain-learners", type=int, default=2000)
    parser.add_argument("--brain-interactions", type=int, default=150)
    parser.add_argument("--brain-epochs", type=int, default=8)
    parser.add_argument("--cache", type=Path, default=OUT / "policy_brains")
    parser.add_argument("--policy-learners", default="",
                        help="Fewer learners for costly arms, e.g. aivo-target=250 (those arms are compared unpaired)")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = PolicyEvaluationSpec(
        policies=tuple(args.policies.split(",")), learner_models=tuple(args.models.split(",")),
        num_learners=args.learners, checkpoints=tuple(int(x) for x in args.items.split(",")), seed=args.seed,
        brain_learners=args.brain_learners, brain_interactions=args.brain_interactions,
        brain_epochs=args.brain_epochs,
        policy_learners={k: int(v) for k, v in (p.split("=") for p in args.policy_learners.split(",") if p)})
    began = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = _uptime()
    tick = time.perf_counter()
    last = {}

    def progress(arm: str, step: int, steps: int) -> None:
        now = time.perf_counter()
        if step == steps or now - last.get(arm, 0) > 60:
            last[arm] = now
            print(f"  {arm}: {step}/{steps} items ({now - tick:.0f} s)", flush=True)

    result = evaluate_policies(spec, cache_dir=args.cache, progress=progress)
    seconds = time.perf_counter() - tick
    load_after = _uptime()
    OUT.mkdir(parents=True, exist_ok=True)
    save_report(result, folder=OUT / "policy_closed_loop", out=OUT / "policy_closed_loop.json",
                plot=OUT / "policy_closed_loop.png")
    command = "python benchmarks/policy_closed_loop.py " + " ".join(sys.argv[1:])
    text = report(result.summary, command=command.strip(), began=began, load_before=load_before,
                  load_after=load_after, seconds=seconds, plot="out/policy_closed_loop.png")
    print(text)
    print(json.dumps({m: e.get("effects", {}).get("beats_every_baseline")
                      for m, e in result.summary["learner_models"].items()}))
    if args.write_results:
        write_section(heading="Learning outcomes", start="<!-- policy_closed_loop:start -->",
                      end="<!-- policy_closed_loop:end -->", body=text)


if __name__ == "__main__":
    main()
