"""`aivo clone`, `aivo train-local`, `aivo aggregate` and `aivo privacy report`.

Thin: parse options, call one service function (aivo.services: clones, local_training,
aggregation, privacy), print a table or `--json`. Learner ids are raw ids (pseudonymized here) unless
`--pseudonym` says they are stored pseudonyms already.
"""

from __future__ import annotations

import json
import math

import typer
from rich.table import Table

from aivo.cli.app import (JsonOption, app, console, current_user, emit, err_console, registry, settings,
                          stored_learner, to_jsonable)
from aivo.errors import DataError

PseudonymOption = typer.Option(False, "--pseudonym", help="LEARNER is already the stored pseudonym.")
privacy_app = typer.Typer(help="User-level and record-level privacy figures.", no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        err_console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


# --- aivo clone --------------------------------------------------------------------------------
@app.command("clone")
def clone_cmd(
    args: list[str] = typer.Argument(None, metavar="LEARNER | compare LEARNER",
                                     help="Clone LEARNER, or `compare LEARNER` to compare a clone with its main model."),
    pseudonym: bool = PseudonymOption,
    all_learners: bool = typer.Option(False, "--all", help="Clone every learner of the registry that has no clone."),
    tenant: str = typer.Option("default", "--tenant", help="Tenant of a new learner."),
    reset: bool = typer.Option(False, "--reset", help="Restart an existing clone from the active Main Brain."),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, help="Registrations per transaction with --all."),
    as_json: bool = JsonOption,
) -> None:
    """Give a learner a personal model: a clone of the active Main Brain storing only personal parameters."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.clones import clone_learner, compare_clone, provision_clones
    from aivo.services.learners import learners_all

    args = list(args or [])
    reg = registry(threads=True)
    if all_learners:
        if args:
            raise DataError("give either LEARNER or --all, not both")
        ids = [r.learner_id for r in learners_all(registry=reg)]
        result = provision_clones(registry=reg, settings=settings(), learner_ids=ids, batch_size=batch_size)
        emit(result.to_dict(), as_json=as_json, render=lambda r: console.print(
            f"{r['created']} clones of {r['main_version']} created ({r['existing']} learners already had one) "
            f"in {r['seconds']:.2f}s, {r['learners_per_second']:.0f} learners/s; all share one "
            f"{r['artifact']['size']}-byte personal-parameter artifact"))
        return
    if len(args) == 2 and args[0] == "compare":
        comparison = compare_clone(registry=reg, settings=settings(), learner_id=stored_learner(args[1], pseudonym))
        emit(to_jsonable(comparison.to_dict()), as_json=as_json, render=_render_comparison)
        return
    if len(args) != 1:
        raise DataError("usage: aivo clone LEARNER | aivo clone compare LEARNER | aivo clone --all")
    result = clone_learner(registry=reg, settings=settings(), learner_id=stored_learner(args[0], pseudonym),
                           tenant=tenant, reset=reset)
    emit(to_jsonable(result.to_dict()), as_json=as_json, render=lambda r: console.print(
        f"clone of {r['model']['source_version']} {'created' if r['created'] else 'reset'} "
        f"(status {r['model']['status']}): {r['parameters']['trainable']} trainable parameters "
        f"({r['parameters']['personal']} personal, {r['parameters']['aggregated']} shared, aggregated), "
        f"{r['parameters']['frozen']} frozen; stored: {r['parameters']['stored_in_clone']} personal "
        f"parameters ({r['artifact']['size']} bytes)"))


def _render_comparison(r: dict) -> None:
    moved = "" if r["active_version"] in (None, r["source_version"]) else \
        f" (the active version is {r['active_version']}: the clone moves to it on its next training)"
    console.print(f"clone on {r['source_version']}{moved}, status {r['status']}, "
                  f"{_fmt(r['stored_bytes'])} bytes stored")
    p = r["parameters"]
    console.print(f"parameters: {p['trainable']} trainable ({p['personal']} personal + {p['aggregated']} shared), "
                  f"{p['frozen']} frozen")
    table = Table(title="per-layer weight difference, clone - main")
    for col in ("layer", "role", "parameters", "L2 difference", "max |difference|", "relative"):
        table.add_column(col, justify="left" if col in ("layer", "role") else "right")
    for layer in r["layers"]:
        table.add_row(layer["layer"], layer["role"], str(layer["num_parameters"]), _fmt(layer["l2_difference"]),
                      _fmt(layer["max_abs_difference"]), _fmt(layer["relative_difference"]))
    console.print(table)


# --- aivo train-local --------------------------------------------------------------------------
@app.command("train-local")
def train_local_cmd(
    learner: str = typer.Argument(None, help="The learner whose clone to train (omit with --all)."),
    pseudonym: bool = PseudonymOption,
    all_learners: bool = typer.Option(False, "--all", help="Train every clone (one learner at a time)."),
    epochs: int | None = typer.Option(None, "--epochs", min=0, help="Local epochs [AIVO_LOCAL_EPOCHS]."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Chunks per local step."),
    learning_rate: float | None = typer.Option(None, "--learning-rate", help="Local SGD step [AIVO_LOCAL_LEARNING_RATE]."),
    mu: float | None = typer.Option(None, "--mu", min=0.0, help="FedProx proximal term [AIVO_FEDPROX_MU]."),
    personal_l2: float | None = typer.Option(None, "--personal-l2", min=0.0, help="[AIVO_PERSONAL_L2]"),
    fallback_confidence: float | None = typer.Option(
        None, "--fallback-confidence", min=0.0,
        help="Serve the clone only when it beats the main model by this many standard errors [AIVO_FALLBACK_CONFIDENCE]."),
    refit: bool | None = typer.Option(
        None, "--refit/--no-refit",
        help="After validation, fit the personal parameters again on all the learner's interactions [AIVO_PERSONAL_REFIT]."),
    dp_noise_multiplier: float | None = typer.Option(
        None, "--dp-noise-multiplier", min=0.0, help="Record-level DP-SGD noise (0 = off) [AIVO_LOCAL_DP_NOISE_MULTIPLIER]."),
    dp_clip_norm: float | None = typer.Option(None, "--dp-clip-norm", help="DP-SGD clip norm [AIVO_LOCAL_DP_CLIP_NORM]."),
    seed: int | None = typer.Option(None, "--seed", help="[AIVO_SEED]"),
    as_json: bool = JsonOption,
) -> None:
    """Train a clone on that learner's own interactions; record the session and its update."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.local_training import local_config_from_settings, train_learner
    from aivo.services.registry import learner_models
    from tqdm.auto import tqdm

    cfg = settings()
    config = local_config_from_settings(cfg, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                        proximal_mu=mu, personal_l2=personal_l2, seed=seed,
                                        fallback_confidence=fallback_confidence, refit_personal=refit,
                                        dp_noise_multiplier=dp_noise_multiplier, dp_clip_norm=dp_clip_norm)
    reg = registry(threads=True)
    if all_learners == (learner is not None):
        raise DataError("give either LEARNER or --all")
    if not all_learners:
        report = train_learner(registry=reg, settings=cfg, learner_id=stored_learner(learner, pseudonym), config=config)
        _warn_record_level(report.to_dict().get("record_epsilon"))
        emit(to_jsonable(report.to_dict()), as_json=as_json, render=_render_local)
        return
    ids = [m.learner_id for m in learner_models(registry=reg, kind="brain", limit=10_000_000)
           if m.status != "inactive"]

    summary = {"trained": 0, "active": 0, "fallback": 0, "failed": 0, "errors": {}}
    for learner_id in tqdm(ids, desc="local training", unit="learner", disable=as_json):
        try:
            report = train_learner(registry=reg, settings=cfg, learner_id=learner_id, config=config)
        except DataError as exc:  # e.g. too few interactions: skip that learner, say why
            summary["failed"] += 1
            summary["errors"][str(exc)[:80]] = summary["errors"].get(str(exc)[:80], 0) + 1
            continue
        summary["trained"] += 1
        summary[report.status] += 1
    emit(summary, as_json=as_json, render=lambda s: console.print(
        f"trained {s['trained']} clones: {s['active']} active, {s['fallback']} served by the main model "
        f"(fallback); {s['failed']} skipped {json.dumps(s['errors']) if s['errors'] else ''}"))


def _warn_record_level(epsilon: float | None) -> None:
    from aivo.privacy.planning import MEANINGLESS_EPSILON  # start-up: the accountants load numpy

    if epsilon is not None and epsilon > MEANINGLESS_EPSILON:
        _warn([f"record-level DP-SGD epsilon {epsilon:.3g} is above {MEANINGLESS_EPSILON:g}: no meaningful "
               "record-level privacy; raise --dp-noise-multiplier (1.0 or more)"])


def _render_local(r: dict) -> None:
    m = r["metrics"]
    hp, hm = m["holdout_personal"] or {}, m["holdout_main"] or {}
    moved = f", moved from {r['moved_from']}" if r["moved_from"] else ""
    console.print(f"trained on {m['num_train']} interactions against {r['main_version']}{moved} in "
                  f"{r['seconds']:.2f}s; held-out {m['num_holdout']}: log-loss {_fmt(hp.get('log_loss'))} "
                  f"personalized vs {_fmt(hm.get('log_loss'))} main")
    if r["status"] == "fallback":
        console.print(f"[yellow]fallback:[/] served by the main model ({m['fallback_reason']})")
    else:
        console.print("status active: served by the personalized clone")
    if r["record_epsilon"] is not None:
        console.print(f"record-level DP-SGD epsilon {r['record_epsilon']:.3g} (delta {r['config']['dp']['delta']:g})")
    if r["update_bytes"]:
        console.print(f"update for federation: {r['update_bytes']} bytes (training session {r['session']['id']})")


# --- aivo aggregate ----------------------------------------------------------------------------
@app.command("aggregate")
def aggregate_cmd(
    strategy: str | None = typer.Option(None, "--strategy",
                                        help="fedavg | fedprox | weighted | median | trimmed-mean [AIVO_AGGREGATION_STRATEGY]."),
    min_learners: int | None = typer.Option(None, "--min-learners", min=1, help="[AIVO_MIN_LEARNERS]"),
    max_stale: float | None = typer.Option(None, "--max-stale", min=0.0, help="Days [AIVO_MAX_STALE_DAYS]."),
    learning_rate: float | None = typer.Option(None, "--learning-rate", help="Server step [AIVO_SERVER_LEARNING_RATE]."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would happen; change nothing."),
    dp: bool | None = typer.Option(None, "--dp/--no-dp", help="User-level DP [AIVO_ENABLE_DIFFERENTIAL_PRIVACY]."),
    noise_multiplier: float | None = typer.Option(None, "--noise-multiplier", min=0.0, help="[AIVO_NOISE_MULTIPLIER]"),
    clip_norm: float | None = typer.Option(None, "--clip-norm", help="[AIVO_CLIP_NORM]"),
    sampling_rate: float | None = typer.Option(None, "--sampling-rate", help="Poisson rate q [AIVO_SAMPLING_RATE]."),
    epsilon_budget: float | None = typer.Option(None, "--epsilon-budget", help="[AIVO_EPSILON_BUDGET]"),
    delta: float | None = typer.Option(None, "--delta", help="[AIVO_DELTA]"),
    weight_cap: float | None = typer.Option(None, "--weight-cap", help="DP weight cap [AIVO_DP_WEIGHT_CAP]."),
    trim_fraction: float | None = typer.Option(None, "--trim-fraction", help="trimmed-mean: share cut per side."),
    reservoir_size: int | None = typer.Option(None, "--reservoir-size", min=1, help="[AIVO_RESERVOIR_SIZE]"),
    mu: float | None = typer.Option(None, "--mu", help="fedprox: the proximal term local training used."),
    score_metric: str | None = typer.Option(None, "--score-metric", help="weighted: training-session metric."),
    gate_margin: float | None = typer.Option(None, "--gate-margin", min=0.0, help="[AIVO_GATE_MARGIN]"),
    seed: int | None = typer.Option(None, "--seed", help="Reproducible sampling and noise (testing only: "
                                                        "a known seed lets anyone remove the noise)."),
    actor: str | None = typer.Option(None, "--actor", help="Who runs it (default: the OS user)."),
    as_json: bool = JsonOption,
) -> None:
    """Aggregate eligible learners' updates into a candidate Main Brain and promote it if the gate passes."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.aggregation import AggregationOptions, run_aggregation

    options = AggregationOptions.from_settings(
        settings(), strategy=strategy, min_learners=min_learners, max_stale_days=max_stale,
        server_learning_rate=learning_rate, dry_run=dry_run, dp_enabled=dp, noise_multiplier=noise_multiplier,
        clip_norm=clip_norm, sample_rate=sampling_rate, epsilon_budget=epsilon_budget, delta=delta,
        weight_cap=weight_cap, trim_fraction=trim_fraction, reservoir_size=reservoir_size, proximal_mu=mu,
        score_metric=score_metric, gate_margin=gate_margin, seed=seed)
    _warn(options.plan().warnings)  # before anything runs
    if seed is not None and options.dp_enabled and not dry_run:
        _warn(["--seed makes the DP noise reproducible: only use it for testing"])
    report = run_aggregation(registry=registry(threads=True), options=options, actor=actor or current_user())
    emit(to_jsonable(report.to_dict()), as_json=as_json, render=_render_aggregation)


def _render_aggregation(r: dict) -> None:
    style = {"applied": "green", "rejected": "yellow", "skipped": "yellow", "dry-run": "cyan"}[r["status"]]
    console.print(f"[bold {style}]{r['status']}[/]: {r['message']}", highlight=False, soft_wrap=True)
    c = r["counts"]
    if c:
        console.print("learners: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in c.items()))
    if r["metrics_before"]:
        console.print(f"held-out AUC {_fmt(r['metrics_before'].get('auc'))} -> {_fmt(r['metrics_after'].get('auc'))}, "
                      f"log-loss {_fmt(r['metrics_before'].get('log_loss'))} -> "
                      f"{_fmt(r['metrics_after'].get('log_loss'))}")
    p = r["privacy"]
    if p.get("enabled"):
        console.print(f"user-level DP: q {p['sample_rate']:g}, sigma {p['noise_multiplier']:g}, C {p['clip_norm']:g}; "
                      f"one round costs epsilon {_fmt(p.get('epsilon_one_round'))} at delta {p['delta']:g} "
                      f"({p['accountant']}); max epsilon after this round {_fmt(p.get('epsilon_after_round_max'))} "
                      f"of budget {p['epsilon_budget']:g}")
    else:
        console.print("[yellow]no user-level DP[/]")
    for rejection in r["rejected"][:10]:
        console.print(f"  rejected update (session {rejection['session_id']}): {rejection['reason']}")
    if len(r["rejected"]) > 10:
        console.print(f"  ... and {len(r['rejected']) - 10} more rejected updates")


# --- aivo privacy report -----------------------------------------------------------------------
@privacy_app.command("report")
def privacy_report_cmd(
    learner: list[str] = typer.Option([], "--learner", help="Show these learners (repeatable)."),
    pseudonym: bool = PseudonymOption,
    limit: int = typer.Option(20, "--limit", min=0, help="Learners listed (the totals cover everyone)."),
    as_json: bool = JsonOption,
) -> None:
    """Each learner's user-level epsilon (ledger) and record-level DP-SGD epsilon, and totals."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.privacy import privacy_plan, privacy_report

    plan = privacy_plan(settings())
    ids = [stored_learner(x, pseudonym) for x in learner] or None
    report = privacy_report(registry=registry(threads=True), plan=plan, learner_ids=ids, limit=limit)
    emit(to_jsonable(report.to_dict()), as_json=as_json, render=_render_privacy)


def _render_privacy(r: dict) -> None:
    _warn(r["warnings"])
    s, o = r["settings"], r["overall"]
    u = o["user_level"]
    console.print(f"settings: DP {'on' if s['enabled'] else 'OFF'}, q {s['sample_rate']:g}, sigma "
                  f"{s['noise_multiplier']:g}, delta {s['delta']:g}, budget {s['epsilon_budget']:g} ({s['accountant']});"
                  f" one round costs epsilon {_fmt(s['epsilon_one_round'])}, {s['rounds_within_budget']} rounds fit "
                  "the budget")
    console.print(f"{o['federated_rounds']} aggregation rounds; {o['learners_in_ledger']} learners in the ledger: "
                  f"max epsilon {_fmt(u['max_epsilon'])}, median {_fmt(u['median_epsilon'])}, "
                  f"{u['learners_exhausted']} at or over the budget, {u['learners_unbounded']} unbounded")
    rec = o["record_level"]
    console.print(f"record-level (local DP-SGD, separate): {rec['learners_with_dp_sgd']} learners, max epsilon "
                  f"{_fmt(rec['max_epsilon'])}")
    table = Table(title="per learner")
    for col in ("learner", "user-level epsilon", "remaining", "rounds eligible", "sampled", "record-level epsilon"):
        table.add_column(col, justify="left" if col == "learner" else "right")
    for row in r["learners"]:
        user = row["user_level"] or {}
        table.add_row(row["learner_id"][:16], "unbounded" if user.get("unbounded") else _fmt(user.get("epsilon")),
                      _fmt(user.get("remaining")), _fmt(user.get("rounds_eligible")), _fmt(user.get("rounds_sampled")),
                      _fmt(row["record_level"]["epsilon"]))
    console.print(table)
