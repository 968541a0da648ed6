"""Federated vs centralized Main Brain on ASSIST2015, every learner a client.

Protocol (../shared/data/kt/assist2015, fixed published train/test split):

* the training learners are split (seed 0): 80% are federated *clients*, 15% the *curriculum*
  (central pre-training data) and 5% *validation* learners (server-side, for early stopping and
  for choosing the round to keep; never trained on);
* **pre-trained only**: the Main Brain (benchmarks/kt_configs.py "assist2015") trained centrally
  on the curriculum;
* **centralized**: the same model trained on curriculum + clients (95% of the training learners);
* **federated**: from the pre-trained model, rounds of: Poisson-sample clients with rate q; each
  sampled client computes its update on its own interactions only (local SGD, the same
  `shared_updates` semantics as `aivo train-local`, many clients at once); updates are clipped
  to C and streamed through `aggregate_updates` (FedAvg; with user-level DP: noise sigma C on the
  sum, fixed denominator q N); the server optimizer (Adam, lr 0.01) applies the aggregate. Embeddings and heads
  are aggregated, the encoder stays frozen (the AIVO_FREEZE_LAYERS default);
* **federated with user-level DP** at target epsilons (delta 1e-5): sigma is calibrated with
  Opacus' accountant for q and the number of rounds T; every client is eligible in every round,
  so each client's ledger would hold exactly T steps of (sigma, q): the epsilon reported is the
  accountant's for that history (RDP).

Test AUC of every arm on test.csv (every attempt but the first of each 200-chunk). Each arm's
result is saved in benchmarks/out/federated_assist2015/ so arms can run separately; `--report`
renders them all.

    python benchmarks/federated_assist2015.py --arms pretrained,centralized
    python benchmarks/federated_assist2015.py --arms fed,dp8,dp4,dp1
    python benchmarks/federated_assist2015.py --report --write-results
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from bench import KT_DATA, load_average, machine, peak_rss_mib, write_section  # noqa: E402

OUT = HERE / "out" / "federated_assist2015"
START, END = "<!-- federated-assist2015:start -->", "<!-- federated-assist2015:end -->"
DELTA = 1e-5

# Federated arms: target epsilon (None = no DP), sampling rate, rounds, clip norm, server optimizer.
# Every arm clips each client's update to C = 1 (without clipping, the first rounds' updates of
# norm ~12 made server steps that diverged; measured 2026-12-04) and applies the aggregate with
# server Adam (lr 0.01): with server SGD (lr 1) the no-DP arm gained only 0.003 AUC in 30 rounds,
# with Adam 0.009. Fewer rounds mean less noise per round for the same epsilon: the DP arms run 40.
ARMS = {
    "fed": dict(epsilon=None, q=0.1, rounds=120, clip=1.0),
    "dp8": dict(epsilon=8.0, q=0.2, rounds=40, clip=1.0),
    "dp4": dict(epsilon=4.0, q=0.2, rounds=40, clip=1.0),
    "dp1": dict(epsilon=1.0, q=0.2, rounds=40, clip=1.0),
}


def load_split(seed: int = 0):
    from aivo.data.kt_format import read_kt_lines
    from aivo.data.splits import split_learner_ids

    train = read_kt_lines(KT_DATA / "assist2015" / "train.csv")
    test = read_kt_lines(KT_DATA / "assist2015" / "test.csv")
    clients, rest, _ = split_learner_ids(train.frame["learner_id"].unique(), fractions=(0.8, 0.2, 0.0), seed=seed)
    curriculum, validation, _ = split_learner_ids(rest, fractions=(0.75, 0.25, 0.0), seed=seed)
    return train, test, clients, curriculum, validation


def metrics_of(brain, log) -> dict:
    from aivo.data.metrics import binary_metrics
    from aivo.brain.predict import predict

    prob = predict(brain=brain, log=log)
    keep = ~np.isnan(prob)
    m = binary_metrics(log.frame["correct"].to_numpy()[keep], prob[keep])
    return {"auc": round(m.auc, 4), "log_loss": round(m.log_loss, 4), "n": m.n}


def central_arm(name: str, args) -> dict:
    from aivo.brain.checkpoint import save_checkpoint
    from aivo.brain.train import train_main_brain
    from kt_configs import PLANS

    train, test, clients, curriculum, validation = load_split()
    learners = list(curriculum) if name == "pretrained" else list(curriculum) + list(clients)
    started = time.perf_counter()
    result = train_main_brain(train=train.select_learners(learners), validation=train.select_learners(validation),
                              config=PLANS["assist2015"].config, seed=0)
    save_checkpoint(result.brain, OUT / name)
    return {"arm": name, "learners": len(learners), "test": metrics_of(result.brain, test),
            "validation_auc": round(result.validation.auc, 4), "best_epoch": result.best_epoch,
            "seconds": round(time.perf_counter() - started)}


def federated_arm(name: str, args) -> dict:
    import torch

    from aivo.brain.batching import encode_log
    from aivo.brain.checkpoint import load_checkpoint
    from aivo.federated.aggregate import aggregate_updates
    from aivo.federated.dp import UserLevelDP, poisson_sample
    from aivo.federated.server import make_server_optimizer
    from aivo.federated.strategies import make_strategy
    from aivo.federated.updates import LearnerUpdate, UpdateSpec
    from aivo.personalization.batched import shared_updates
    from aivo.personalization.parts import partition_parameters
    from aivo.personalization.round_updates import split_encoded
    from aivo.privacy.accountants import epsilon_for, noise_multiplier_for

    arm = {**ARMS[name], **{k: v for k, v in vars(args).items() if k in ARMS[name] and v is not None}}
    train, test, clients, curriculum, validation = load_split()
    brain = load_checkpoint(OUT / "pretrained")
    partition = partition_parameters(brain.model, frozen_prefixes="encoder")
    client_log = train.select_learners(clients)
    encoded = encode_log(client_log, vocab=brain.vocab, tables=brain.tables, config=brain.config)
    chunks = split_encoded(encoded, client_log.frame["learner_id"].to_numpy(dtype=object))
    lengths = np.array([lc.encoded.correct.shape[0] for lc in chunks])
    num_clients = len(chunks)
    params = dict(brain.model.named_parameters())
    spec = UpdateSpec(main_version="pretrained", shapes={n: tuple(params[n].shape) for n in partition.aggregated})
    sigma = None
    strategy = make_strategy("fedavg")
    if arm["epsilon"] is not None:
        sigma = noise_multiplier_for(target_epsilon=arm["epsilon"], delta=DELTA, sample_rate=arm["q"],
                                     steps=arm["rounds"])
        strategy = UserLevelDP(noise_multiplier=sigma, clip_norm=arm["clip"], sample_rate=arm["q"]).wrap(
            strategy, num_eligible=num_clients)
    server = make_server_optimizer(args.server, learning_rate=args.server_lr)
    generator = np.random.default_rng(args.seed)  # benchmark only: a real deployment never fixes it
    val_log = train.select_learners(validation)
    best_auc, best_round, best_state = metrics_of(brain, val_log)["auc"], 0, None
    history = []
    started = time.perf_counter()
    for round_index in range(1, arm["rounds"] + 1):
        sampled = np.flatnonzero(poisson_sample(num_clients, sample_rate=arm["q"], generator=generator))
        sampled = sampled[np.argsort(lengths[sampled], kind="stable")]  # similar lengths together: less padding

        def updates():
            for start in range(0, len(sampled), args.group):
                group = [chunks[i] for i in sampled[start:start + args.group]]
                deltas = shared_updates(brain=brain, learners=group, partition=partition, epochs=args.local_epochs,
                                        learning_rate=args.local_lr)
                for j, lc in enumerate(group):
                    yield LearnerUpdate(lc.learner_id, {n: deltas[n][j] for n in partition.aggregated}, "pretrained",
                                        int(lc.encoded.correct.shape[0]))

        outcome = aggregate_updates(updates=updates(), spec=spec, strategy=strategy, clip_norm=arm["clip"],
                                    server_learning_rate=1.0, generator=generator)
        server.apply(params, spec.unflatten(outcome.delta))
        if round_index % args.eval_every == 0 or round_index == arm["rounds"]:
            auc = metrics_of(brain, val_log)["auc"]
            history.append({"round": round_index, "validation_auc": auc, "sampled": len(sampled),
                            "clipped": outcome.num_clipped, "mean_norm": round(outcome.norms["mean"], 3),
                            "seconds": round(time.perf_counter() - started)})
            print(json.dumps(history[-1]), flush=True)
            if auc > best_auc:
                best_auc, best_round = auc, round_index
                best_state = {n: p.detach().clone() for n, p in params.items()}
    if best_state is not None:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(best_state[n])
    epsilon = (epsilon_for(history=[(sigma, arm["q"], arm["rounds"])], delta=DELTA) if sigma is not None else None)
    return {"arm": name, "test": metrics_of(brain, test), "validation_auc": best_auc, "best_round": best_round,
            "rounds": arm["rounds"], "q": arm["q"], "clip": arm["clip"], "sigma": sigma, "epsilon": epsilon,
            "delta": DELTA if sigma is not None else None, "clients": num_clients,
            "aggregated_parameters": spec.numel, "local_epochs": args.local_epochs, "local_lr": args.local_lr,
            "server": args.server, "server_lr": args.server_lr, "seconds": round(time.perf_counter() - started),
            "history": history}


def render(results: dict, command: str) -> str:
    rows = [("pre-trained only (curriculum, 15% of the training learners)", "pretrained"),
            ("centralized (95% of the training learners)", "centralized"),
            ("federated, no DP", "fed"), ("federated, user-level DP, epsilon 8", "dp8"),
            ("federated, user-level DP, epsilon 4", "dp4"), ("federated, user-level DP, epsilon 1", "dp1")]
    central = results.get("centralized", {}).get("test", {}).get("auc")
    lines = [f"Rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; each arm's run date and machine are in its "
             "row's notes. Reproduce: `" + command + "` after running the arms "
             "(`--arms pretrained,centralized`, then `--arms fed,dp8,dp4,dp1`).", "",
             "| arm | test AUC | vs centralized | test log-loss | notes |", "|---|---|---|---|---|"]
    for label, key in rows:
        r = results.get(key)
        if r is None:
            lines.append(f"| {label} | not run | | | |")
            continue
        auc = r["test"]["auc"]
        gap = "" if central is None or key == "centralized" else f"{auc - central:+.4f}"
        if key in ("pretrained", "centralized"):
            notes = f"best epoch {r['best_epoch']}, {r['seconds']} s"
        else:
            dp = ("no DP" if r["sigma"] is None else
                  f"sigma {r['sigma']:.3f}, C {r['clip']:g}, epsilon {r['epsilon']:.2f} at delta {r['delta']:g} (RDP)")
            notes = (f"q {r['q']:g}, {r['rounds']} rounds (best {r['best_round']}), {dp}; local {r['local_epochs']} "
                     f"epoch(s) SGD {r['local_lr']:g}, server {r['server']} {r['server_lr']:g}; "
                     f"{r['aggregated_parameters']:,} aggregated values; {r['seconds']} s")
        lines.append(f"| {label} | {auc:.4f} | {gap} | {r['test']['log_loss']:.4f} | {notes}; {r.get('run', '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", default="")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--write-results", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--q", type=float, default=None)
    parser.add_argument("--clip", type=float, default=None)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--local-lr", type=float, default=3.0)
    parser.add_argument("--server", default="adam", help="server optimizer: adam (FedAdam) or sgd")
    parser.add_argument("--server-lr", type=float, default=0.01)
    parser.add_argument("--group", type=int, default=256)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    for name in [a for a in args.arms.split(",") if a]:
        began = datetime.now(timezone.utc)
        result = central_arm(name, args) if name in ("pretrained", "centralized") else federated_arm(name, args)
        result["run"] = f"run {began:%Y-%m-%d %H:%M} UTC, {machine()}, 1-minute load average {load_average():.1f}, peak RSS {peak_rss_mib():.0f} MiB"
        result["command"] = "python benchmarks/federated_assist2015.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
        print(json.dumps({k: v for k, v in result.items() if k != "history"}), flush=True)
    if args.report or args.write_results:
        results = {p.stem: json.loads(p.read_text()) for p in OUT.glob("*.json")}
        table = render(results, "python benchmarks/federated_assist2015.py --report --write-results")
        print(table)
        if args.write_results:
            write_section(heading="Federated learning on ASSIST2015", start=START, end=END, body=table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
