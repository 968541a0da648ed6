"""Knowledge-tracing benchmark of the Main Brain (issue 2 targets) next to a plain reference DKT.

Protocol (../shared/data/kt/README.md): train on train.csv, holding out learners of it for early
stopping; score every attempt of test.csv but the first of each chunk of 200, from the attempts
before it in that chunk. Every (dataset, model) runs in its own subprocess so that its peak memory
(ru_maxrss) and time are its own. On simulated data (aivo.data.simulator) the AUC is compared with
the oracle AUC of the true probabilities.

    python benchmarks/kt_benchmark.py                      # everything, 2 threads, writes RESULTS.md
    python benchmarks/kt_benchmark.py --datasets statics --no-dkt --no-write
    python benchmarks/kt_benchmark.py --datasets statics   # re-run one data set; the table keeps the others
    python benchmarks/kt_benchmark.py --report             # only render the kept results into RESULTS.md

Every run's result is also kept in benchmarks/out/kt/<dataset>-<model>.json with its date, load
average and command, and the RESULTS.md table is rendered from all kept results (each row says
when it was measured).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE))

from bench import KT_DATA, RESULTS, load_average, machine, peak_rss_mib, write_section  # noqa: E402

DATASETS = ("statics", "assist2015", "synthetic5")
TARGETS = {"statics": 0.84, "assist2015": 0.74, "synthetic5": 0.83}
DKT_REFERENCE = {"statics": 0.830, "assist2015": 0.732, "synthetic5": 0.822}
START, END = "<!-- kt-benchmark:start -->", "<!-- kt-benchmark:end -->"
HEADING = "## Main Brain: knowledge tracing"
KEPT = HERE / "out" / "kt"


# --- workers (run in a subprocess) ---------------------------------------------------------
def _split(train, fraction: float, seed: int):
    from aivo.data.splits import split_learner_ids

    train_ids, val_ids, _ = split_learner_ids(train.frame["learner_id"].unique(),
                                              fractions=(1.0 - fraction, fraction, 0.0), seed=seed)
    return train.select_learners(train_ids), train.select_learners(val_ids)


def _fold_split(train, folds: int, seed: int, member: int):
    """Member `member` holds out fold member % folds of one fixed shuffle of the training learners
    (a cross-validation ensemble: the members' validation learners are disjoint)."""
    import numpy as np

    ids = np.array(sorted(set(map(str, train.frame["learner_id"].unique()))), dtype=object)
    ids = ids[np.random.default_rng(seed).permutation(len(ids))]
    held = set(ids[member % folds::folds])
    return (train.select_learners([i for i in ids if i not in held]), train.select_learners(sorted(held)))


def _member(dataset: str, seed: int, member: int, budget_s: float) -> dict:
    """One ensemble member in its own process (1 torch thread): train, then predict the test set."""
    import torch

    torch.set_num_threads(1)
    from kt_configs import PLANS

    from aivo.brain.predict import predict
    from aivo.brain.train import train_main_brain
    from aivo.data.kt_format import read_kt_lines

    plan = PLANS[dataset]
    train = read_kt_lines(KT_DATA / dataset / "train.csv")
    test = read_kt_lines(KT_DATA / dataset / "test.csv")
    if plan.validation_folds:
        part_train, part_val = _fold_split(train, plan.validation_folds, seed, member)
    else:
        part_train, part_val = _split(train, plan.validation_fraction, seed + member)
    result = train_main_brain(train=part_train, validation=part_val, config=plan.config, seed=seed + member,
                              time_budget_s=max(budget_s, 1.0))
    model = result.brain.model
    return {"info": {"seed": seed + member, "best_epoch": result.best_epoch, "epochs_run": len(result.history),
                     "validation_auc": round(result.validation.auc, 4), "seconds": round(result.seconds, 1)},
            "probs": predict(brain=result.brain, log=test),
            "parameters_shared": model.num_parameters("embed", "encoder", "head"),
            "parameters_personal": model.num_parameters("personal"),
            "peak_rss_mib": round(peak_rss_mib())}


def _train_ensemble(plan, dataset: str, test, *, seed: int, parallel: int) -> dict:
    """Train up to plan.ensemble_size members within the time budget, `parallel` at a time (each in
    its own process with one torch thread: on 2 cores two single-threaded members train about twice
    as fast as one member on two threads); metrics of member 0 and of the mean of all members."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    import numpy as np

    from aivo.data.metrics import binary_metrics

    started = time.perf_counter()
    done: dict[int, dict] = {}
    with ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        running, next_member = {}, 0
        while True:
            elapsed = time.perf_counter() - started
            typical = max((d["info"]["seconds"] for d in done.values()), default=0.0)
            while (len(running) < parallel and next_member < plan.ensemble_size
                   and (not done or elapsed + typical <= plan.time_budget_s)  # another member fits
                   and (done or next_member < parallel)):  # before any has finished: the first wave only
                running[pool.submit(_member, dataset, seed, next_member, plan.time_budget_s - elapsed)] = next_member
                next_member += 1
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done[running.pop(future)] = future.result()
    train_seconds = time.perf_counter() - started
    members = [done[m] for m in sorted(done)]
    probs = [m["probs"] for m in members]
    scored = ~np.isnan(probs[0])
    y = test.frame["correct"].to_numpy()[scored]
    single = binary_metrics(y, probs[0][scored])
    mean = binary_metrics(y, np.mean(probs, axis=0)[scored])
    return {"auc": round(single.auc, 4), "log_loss": round(single.log_loss, 4),
            "ensemble_auc": round(mean.auc, 4), "ensemble_log_loss": round(mean.log_loss, 4),
            "ensemble_members": len(members), "members": [m["info"] for m in members],
            "parallel_members": parallel, "member_peak_rss_mib": max(m["peak_rss_mib"] for m in members),
            "train_seconds": round(train_seconds, 1), "num_scored": int(scored.sum()),
            "parameters_shared": members[0]["parameters_shared"],
            "parameters_personal": members[0]["parameters_personal"], "config": plan.config.to_dict()}


def worker(dataset: str, model: str, seed: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from kt_configs import PLANS

    from aivo.data.kt_format import read_kt_lines

    began = time.perf_counter()
    if model == "simulated":
        return {**_simulated(PLANS["simulated"], seed), "peak_rss_mib": round(peak_rss_mib())}
    test = read_kt_lines(KT_DATA / dataset / "test.csv")
    if model == "dkt":
        from kt_dkt import DKTConfig, train_and_test_dkt

        train = read_kt_lines(KT_DATA / dataset / "train.csv")
        part_train, part_val = _split(train, PLANS[dataset].validation_fraction, seed)
        out = train_and_test_dkt(train=part_train, validation=part_val, test=test, config=DKTConfig(), seed=seed)
    else:  # each member process reads the training data itself
        out = _train_ensemble(PLANS[dataset], dataset, test, seed=seed, parallel=max(1, threads))
    out["wall_seconds"] = round(time.perf_counter() - began, 1)
    out["peak_rss_mib"] = round(peak_rss_mib())
    if "member_peak_rss_mib" in out:  # members run side by side: their peaks add up
        out["peak_rss_mib"] += out["parallel_members"] * out["member_peak_rss_mib"]
    return out


def _simulated(plan, seed: int) -> dict:
    from aivo.brain.predict import evaluate
    from aivo.brain.train import train_main_brain
    from aivo.data.simulator import SimulatorConfig, simulate_cohort
    from aivo.data.splits import split_by_learner

    cohort = simulate_cohort(config=SimulatorConfig(num_learners=plan.extra.get("num_learners", 5000)), seed=seed)
    split = split_by_learner(cohort.log, seed=seed)
    started = time.perf_counter()
    result = train_main_brain(train=split.train, validation=split.validation, config=plan.config, seed=seed,
                              time_budget_s=plan.time_budget_s)
    train_seconds = time.perf_counter() - started
    report = evaluate(brain=result.brain, log=split.test, group_by=["accommodation"])
    per_group = {k: round(v.auc, 4) for k, v in report.subgroups["accommodation"].items() if v.auc is not None}
    by_position, by_skill = _gap_tables(result.brain, split.test)
    ceiling = _bayes_ceiling(cohort, result.brain, split.test, learners=plan.extra.get("bayes_learners", 300),
                             particles=plan.extra.get("bayes_particles", 1000), seed=seed)
    return {"learners": cohort.config.num_learners, "interactions": cohort.log.num_interactions,
            "gap_by_position": by_position, "gap_by_skill_attempts": by_skill, "bayes": ceiling,
            "auc": round(report.metrics.auc, 4), "log_loss": round(report.metrics.log_loss, 4),
            "oracle_auc": round(report.oracle.auc, 4), "oracle_log_loss": round(report.oracle.log_loss, 4),
            "gap": round(report.oracle.auc - report.metrics.auc, 4), "auc_by_accommodation": per_group,
            "best_epoch": result.best_epoch, "train_seconds": round(train_seconds, 1)}


BAYES_VARIANTS = {
    # What the log holds: answers, days, response times, the learner's grade and accommodation.
    "full_log": dict(use_response_times=True, profile_from_log=True),
    # What the Main Brain reads: answers (and, for the replay, days and grade); the profile is inferred.
    "answers_only": dict(use_response_times=False, profile_from_log=False),
}


def _bayes_ceiling(cohort, brain, test, *, learners: int, particles: int, seed: int) -> dict:
    """The Bayes-optimal history-based predictor (aivo.data.simulator.bayes) on the first
    `learners` test learners, next to the Main Brain and the oracle on the same answers."""
    import numpy as np

    from aivo.data.metrics import binary_metrics
    from aivo.brain.predict import predict
    from aivo.data.simulator.bayes import BayesConfig, bayes_predictions

    subset = test.select_learners(sorted(test.frame["learner_id"].astype(str).unique())[:learners])
    frame = subset.frame
    model = predict(brain=brain, log=subset)
    scored = ~np.isnan(model)
    y, oracle = frame["correct"].to_numpy()[scored], frame["p_true"].to_numpy(dtype=np.float64)[scored]
    position = frame.groupby("learner_id", sort=False).cumcount().to_numpy()[scored]
    columns = {"main_brain": model[scored], "oracle": oracle}
    out = {"learners": subset.num_learners, "scored": int(scored.sum()), "particles": particles, "variants": {}}
    for name, options in BAYES_VARIANTS.items():
        print(f"Bayes ceiling ({name}) on {subset.num_learners} test learners, {particles} particles ...",
              file=sys.stderr, flush=True)
        res = bayes_predictions(cohort, subset, config=BayesConfig(particles=particles, **options), seed=seed)
        columns[name] = res.p_correct[scored]
        out["variants"][name] = {"seconds": round(res.seconds, 1), "moves": res.moves,
                                 "acceptance": round(res.acceptance, 3)}
    for name, values in columns.items():
        metrics = binary_metrics(y, values)
        out.setdefault("auc", {})[name] = round(metrics.auc, 4)
        out.setdefault("log_loss", {})[name] = round(metrics.log_loss, 4)
    out["by_position"] = []
    for low, high in POSITION_BUCKETS:
        keep = (position >= low) & (position <= high)
        out["by_position"].append({"earlier_attempts": f"{low}-{high}", "n": int(keep.sum()),
                                   **{name: round(binary_metrics(y[keep], v[keep]).auc, 4)
                                      for name, v in columns.items()}})
    return out


POSITION_BUCKETS = ((1, 9), (10, 24), (25, 49), (50, 99))
SKILL_ATTEMPT_BUCKETS = ((0, 0), (1, 2), (3, 5), (6, 10_000))


def _gap_tables(brain, test) -> tuple[list[dict], list[dict]]:
    """Model vs oracle AUC (1) by how many earlier attempts the learner has and (2) by how many
    earlier attempts the learner has on the same skill (the first skill of the item). The oracle
    knows each learner's latent traits, per-skill ability included, from the first attempt; a
    model must infer them from the history, so the gaps show how much of it is cold start."""
    import numpy as np

    from aivo.data.metrics import binary_metrics
    from aivo.brain.predict import predict

    prob = predict(brain=brain, log=test)
    frame = test.frame
    position = frame.groupby("learner_id", sort=False).cumcount().to_numpy()
    first_skill = frame["skill_ids"].astype(str).str.split(r"[;,]", regex=True).str[0]
    on_skill = frame.assign(_skill=first_skill).groupby(["learner_id", "_skill"], sort=False).cumcount().to_numpy()
    y, oracle = frame["correct"].to_numpy(), frame["p_true"].to_numpy(dtype=np.float64)

    def table(counts, buckets, label: str) -> list[dict]:
        out = []
        for low, high in buckets:
            keep = (counts >= low) & (counts <= high) & (position >= 1) & ~np.isnan(prob)
            if keep.sum() < 100:
                continue
            model_auc = binary_metrics(y[keep], prob[keep]).auc
            oracle_auc = binary_metrics(y[keep], oracle[keep]).auc
            name = f"{low}" if low == high else (f"{low}+" if high >= 10_000 else f"{low}-{high}")
            out.append({label: name, "n": int(keep.sum()), "auc": round(model_auc, 4),
                        "oracle_auc": round(oracle_auc, 4), "gap": round(oracle_auc - model_auc, 4)})
        return out

    return (table(position, POSITION_BUCKETS, "earlier_attempts"),
            table(on_skill, SKILL_ATTEMPT_BUCKETS, "earlier_attempts_on_skill"))


# --- parent ------------------------------------------------------------------------------
def run_child(dataset: str, model: str, seed: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--worker", model, "--dataset", dataset, "--seed", str(seed),
           "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{dataset}/{model} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def render(results: dict, *, command: str, threads: int, load_before: float, load_after: float) -> str:
    def when(r: dict | None) -> str:
        return "" if not r or "measured" not in r else f"{r['measured']} (load {r.get('load_before', 0):.1f})"

    lines = [f"Rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the kept results of each (data set, model); "
             f"machine: {machine()}; torch threads: {threads}. Each row says when it was measured and the 1-minute "
             "load average before it (above ~1.5, other jobs shared the 2 cores: times are pessimistic and fewer "
             "ensemble members fit in the 9-minute budget). Ensemble members train side by side, one process per "
             "core with one torch thread each (rows whose details show parallel_members); their peak memory is "
             "the sum of the processes'.",
             f"Reproduce: `{command}`", "",
             "| data set | target | Main Brain AUC (single) | ensemble AUC (members) | train time | peak memory "
             "| reference DKT AUC | DKT train time | measured |", "|---|---|---|---|---|---|---|---|---|"]
    for dataset in DATASETS:
        if dataset not in results:
            continue
        ours, dkt = results[dataset].get("ours"), results[dataset].get("dkt")
        best = max(ours["auc"], ours["ensemble_auc"]) if ours else None
        mark = "" if best is None else (" (met)" if best >= TARGETS[dataset] else " (missed)")
        lines.append(
            f"| {dataset} | {TARGETS[dataset]:.2f}{mark} | {ours['auc']:.4f} | {ours['ensemble_auc']:.4f} "
            f"({ours['ensemble_members']}) | {ours['train_seconds']:.0f} s | {ours['peak_rss_mib']} MiB | "
            + (f"{dkt['test_auc']:.4f} | {dkt['train_seconds']:.0f} s |" if dkt else "- | - |")
            + f" {when(ours)} |")
    if "simulated" in results:
        sim = results["simulated"]["ours"]
        lines += ["", f"Simulated cohort ({sim['learners']} learners, {sim['interactions']} interactions, "
                      f"split 80/10/10 by learner): test AUC {sim['auc']:.4f} vs oracle AUC {sim['oracle_auc']:.4f} "
                      f"(gap {sim['gap']:.4f}; target <= 0.01), log-loss {sim['log_loss']:.4f} vs "
                      f"{sim['oracle_log_loss']:.4f}; train time {sim['train_seconds']:.0f} s; AUC by accommodation: "
                      f"{sim['auc_by_accommodation']}; measured {when(sim)}."]
        if sim.get("gap_by_position"):
            lines += ["", "Gap to the oracle by the number of earlier attempts of the learner (the oracle knows "
                          "every learner's latent traits from the first attempt; a model has to infer them):", "",
                      "| earlier attempts | scored | Main Brain AUC | oracle AUC | gap |", "|---|---|---|---|---|"]
            lines += [f"| {b['earlier_attempts']} | {b['n']:,} | {b['auc']:.4f} | {b['oracle_auc']:.4f} | "
                      f"{b['gap']:.4f} |" for b in sim["gap_by_position"]]
        if sim.get("gap_by_skill_attempts"):
            lines += ["", "The same by the learner's earlier attempts on the item's skill (a learner practises a skill "
                          "for 3-10 attempts, then moves on; the oracle knows the learner's ability on a skill before "
                          "the first attempt on it):", "",
                      "| earlier attempts on the skill | scored | Main Brain AUC | oracle AUC | gap |",
                      "|---|---|---|---|---|"]
            lines += [f"| {b['earlier_attempts_on_skill']} | {b['n']:,} | {b['auc']:.4f} | {b['oracle_auc']:.4f} | "
                      f"{b['gap']:.4f} |" for b in sim["gap_by_skill_attempts"]]
        if sim.get("bayes"):
            lines += _render_bayes(sim["bayes"])
    lines += ["", "Details (per ensemble member: seed, best epoch, validation AUC, seconds):", "```",
              json.dumps({d: {m: {k: v for k, v in r.items() if k != 'config'} for m, r in x.items()}
                          for d, x in results.items()}, indent=1), "```"]
    return "\n".join(lines)


def _render_bayes(bayes: dict) -> list[str]:
    auc, loss = bayes["auc"], bayes["log_loss"]
    names = (("main_brain", "Main Brain"), ("answers_only", "Bayes-optimal, answers only"),
             ("full_log", "Bayes-optimal, full log"), ("oracle", "oracle (true probabilities)"))
    lines = ["", f"What any model could reach: the Bayes-optimal history-based predictor of the simulator "
                 f"(aivo.data.simulator.bayes: the posterior mean of the true probability given the learner's history, "
                 f"by sequential Monte Carlo with {bayes['particles']} particles per learner) on the first "
                 f"{bayes['learners']} test learners ({bayes['scored']:,} scored answers). \"Answers only\" sees what "
                 "the Main Brain reads (items, answers, and the days and grade the replay needs) and infers the "
                 "accommodation profile; \"full log\" also reads the response times and the profile.", "",
             "| predictor | AUC | log-loss | gap to the oracle AUC |", "|---|---|---|---|"]
    lines += [f"| {label} | {auc[key]:.4f} | {loss[key]:.4f} | {auc['oracle'] - auc[key]:.4f} |" for key, label in names]
    lines += ["", "| earlier attempts | scored | Main Brain | Bayes, answers only | Bayes, full log | oracle |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {b['earlier_attempts']} | {b['n']:,} | {b['main_brain']:.4f} | {b['answers_only']:.4f} | "
              f"{b['full_log']:.4f} | {b['oracle']:.4f} |" for b in bayes["by_position"]]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=[*DATASETS, "simulated"],
                        choices=[*DATASETS, "simulated"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-dkt", action="store_true", help="Skip the reference DKT.")
    parser.add_argument("--no-ours", action="store_true", help="Only the reference DKT (and the simulated cohort).")
    parser.add_argument("--no-write", action="store_true", help=f"Do not update {RESULTS.name}.")
    parser.add_argument("--report", action="store_true", help="Run nothing: render the kept results.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.dataset, args.worker, args.seed, args.threads)))
        return
    command = "python " + " ".join([str(Path(__file__).relative_to(REPO)), *sys.argv[1:]])
    if args.report:  # what reproduces the table; each row's details hold the command that measured it
        command = "python " + str(Path(__file__).relative_to(REPO))
    load_before = load_average()
    results: dict[str, dict] = {}
    for dataset in [] if args.report else args.datasets:
        models = (["simulated"] if dataset == "simulated"
                  else ([] if args.no_ours else ["ours"]) + ([] if args.no_dkt else ["dkt"]))
        for model in models:
            print(f"[{datetime.now():%H:%M:%S}] {dataset} / {model} ...", flush=True)
            before = load_average()
            out = run_child(dataset, model, args.seed, args.threads)
            out.update(measured=f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", load_before=round(before, 2),
                       command=command)
            KEPT.mkdir(parents=True, exist_ok=True)
            (KEPT / f"{dataset}-{model}.json").write_text(json.dumps(out, indent=1))
            results.setdefault(dataset, {})["ours" if model == "simulated" else model] = out
            print(json.dumps({k: v for k, v in out.items() if k != "config"}), flush=True)
    for kept in sorted(KEPT.glob("*.json")):  # data sets not re-run this time keep their last result
        dataset, model = kept.stem.rsplit("-", 1)
        key = "ours" if model == "simulated" else model
        if dataset in DATASETS + ("simulated",) and key not in results.get(dataset, {}):
            results.setdefault(dataset, {})[key] = json.loads(kept.read_text())
    results = {d: results[d] for d in (*DATASETS, "simulated") if d in results}
    text = render(results, command=command, threads=args.threads, load_before=load_before,
                  load_after=load_average())
    print("\n" + text)
    if not args.no_write:
        write_section(heading=HEADING[3:], start=START, end=END, body=text)
        print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
