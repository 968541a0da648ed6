"""Continuous-training operations: `aivo pipeline`, `aivo worker`, `aivo jobs`, `aivo scheduler`,
`aivo drift`. Thin: parse options, call one service function (aivo.services: pipeline, jobs,
scheduler, drift), print the result (`--json` for scripts)."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from aivo.cli.app import (JsonOption, app, console, current_user, emit, registry, settings, stored_learner,
                          to_jsonable)
from aivo.errors import DataError

pipeline_app = typer.Typer(help="The continuous-training pipeline of the Main Brain.", no_args_is_help=True)
worker_app = typer.Typer(help="Trainer workers: run queued jobs.", no_args_is_help=True)
jobs_app = typer.Typer(help="Trainer jobs: create, list, show, cancel, evaluate, promote.", no_args_is_help=True)
scheduler_app = typer.Typer(help="The training scheduler (APScheduler).", no_args_is_help=True)
drift_app = typer.Typer(help="Drift monitoring of the active Main Brain.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(worker_app, name="worker")
app.add_typer(jobs_app, name="jobs")
app.add_typer(scheduler_app, name="scheduler")
app.add_typer(drift_app, name="drift")


def _json_arg(value: str | None, what: str) -> dict[str, Any] | None:
    """A JSON object given inline or as @file / a path to a .json file."""
    if value is None:
        return None
    text = value
    path = Path(value[1:] if value.startswith("@") else value)
    if value.startswith("@") or (value.endswith(".json") and path.exists()):
        try:
            text = path.read_text()
        except OSError as exc:
            raise DataError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"the {what} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(parsed, dict):
        raise DataError(f"the {what} must be a JSON object")
    return parsed


def _until_signal(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop` (graceful shutdown of long-running commands)."""
    def handler(signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# --- aivo pipeline ----------------------------------------------------------------------------
@pipeline_app.command("run")
def pipeline_run(
    hpo_trials: int | None = typer.Option(None, "--hpo-trials", min=0, help="Optuna trials [AIVO_HPO_TRIALS]."),
    hpo_timeout: float | None = typer.Option(None, "--hpo-timeout", min=1, help="Search time bound, s [AIVO_HPO_TIMEOUT_S]."),
    seed: int | None = typer.Option(None, "--seed", help="Training seed [AIVO_SEED]."),
    brain_config: str | None = typer.Option(None, "--brain-config", help="BrainConfig overrides: JSON or @file."),
    policy: str | None = typer.Option(None, "--policy", help='Harness policy: JSON or @file, e.g. {"thresholds": {"auc": 0.7}}.'),
    tenant: str | None = typer.Option(None, "--tenant", help="Train on one tenant's interactions only."),
    no_promote: bool = typer.Option(False, "--no-promote", help="Register the candidate but never promote it."),
    reason: str = typer.Option("manual pipeline run", "--reason"),
    as_json: bool = JsonOption,
) -> None:
    """Run the pipeline once in this process: collect, scrub, split, search, train, evaluate, gate."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.pipeline import PipelineConfig, run_pipeline

    cfg = settings()
    reg = registry(threads=True)
    config = PipelineConfig.from_settings(cfg, hpo_trials=hpo_trials, hpo_timeout_s=hpo_timeout, seed=seed,
                                          brain=_json_arg(brain_config, "brain config") or {},
                                          harness=_json_arg(policy, "policy") or {}, tenant=tenant,
                                          promote="never" if no_promote else "gate")
    if as_json:
        report = run_pipeline(registry=reg, settings=cfg, config=config, trigger=reason, actor=current_user())
    else:
        with console.status("starting") as status:
            def progress(stage: str, fraction: float | None, message: str) -> None:
                done = "" if fraction is None else f" {fraction:.0%}"
                status.update(f"[bold]{stage}[/]{done}: {message[:120]}")

            report = run_pipeline(registry=reg, settings=cfg, config=config, trigger=reason, actor=current_user(),
                                  report=progress)

    def render(r) -> None:
        test = r.test_metrics["metrics"]
        console.print(f"pipeline run {r.run_id}: candidate [bold]{r.candidate_version}[/], test AUC "
                      f"{test['auc']:.4f}, accuracy {test['accuracy']:.4f} ({r.seconds:.1f}s)")
        console.print(("[green]promoted[/]" if r.promoted else "[yellow]not promoted[/]") + f": {r.decision}")

    emit(to_jsonable(report.to_dict()) if as_json else report, as_json=as_json, render=render)


@pipeline_app.command("runs")
def pipeline_runs(limit: int = typer.Option(20, "--limit", min=1), as_json: bool = JsonOption) -> None:
    """Recent pipeline runs, newest first."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.pipeline import recent_runs

    runs = recent_runs(registry=registry(threads=True), limit=limit)

    def render(rows) -> None:
        table = Table(title="pipeline runs")
        for col in ("id", "status", "started", "trigger", "candidate", "promoted", "test AUC", "decision"):
            table.add_column(col)
        for r in rows:
            auc = (r.test_metrics.get("metrics") or {}).get("auc")
            table.add_row(str(r.id), r.status, r.started_at.isoformat(timespec="seconds"), r.trigger[:30],
                          r.candidate_version or "", "yes" if r.promoted else "no",
                          "" if auc is None else f"{auc:.4f}", (r.decision or r.error or "")[:60])
        console.print(table)

    emit([r.to_dict() for r in runs] if as_json else runs, as_json=as_json, render=render)


# --- aivo worker ------------------------------------------------------------------------------
@worker_app.command("run")
def worker_run(
    once: bool = typer.Option(False, "--once", help="Run at most one job, then exit."),
    exit_when_idle: bool = typer.Option(False, "--exit-when-idle", help="Exit when the queue is empty."),
    max_jobs: int | None = typer.Option(None, "--max-jobs", min=1),
    kinds: str | None = typer.Option(None, "--kinds", help="Only these job kinds (comma-separated)."),
    poll: float = typer.Option(1.0, "--poll", min=0.05, help="Seconds between queue polls when idle."),
) -> None:
    """Run queued trainer jobs until stopped (SIGTERM/SIGINT requeue the job in progress)."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.jobs import make_worker

    worker = make_worker(registry=registry(threads=True), settings=settings(), poll_s=poll,
                         kinds=tuple(k.strip() for k in kinds.split(",")) if kinds else None)
    stop = threading.Event()
    _until_signal(stop)
    threading.Thread(target=lambda: (stop.wait(), worker.shutdown()), daemon=True).start()
    console.print(f"worker {worker.worker_id} running (kinds: {', '.join(worker.claimable_kinds()) or 'none'})",
                  highlight=False)

    def report(job) -> None:
        console.print(f"job {job.id} ({job.kind}, {job.model_id}): {job.status}"
                      + (f" - {job.error}" if job.error else ""), highlight=False)

    worker.run_forever(max_jobs=1 if once else max_jobs, exit_when_idle=exit_when_idle or once, on_job=report)


# --- aivo jobs --------------------------------------------------------------------------------
def _job_line(job) -> str:
    extra = f", candidate {job.candidate_version}" if job.candidate_version else ""
    extra += f", promoted {job.promoted_version}" if job.promoted_version else ""
    extra += f", error: {job.error}" if job.error else ""
    return f"job {job.id} ({job.kind}, {job.model_id}): {job.status}{extra}"


@jobs_app.command("create")
def jobs_create(
    kind: str = typer.Option("main_brain", "--kind", help="main_brain | learner_model | federated"),
    datasheet: str = typer.Option(..., "--datasheet", help="Datasheet JSON or @file (source, license, "
                                  "collection_process, pii_handling, intended_use)."),
    config: str | None = typer.Option(None, "--config", help="Job config: JSON or @file."),
    policy: str | None = typer.Option(None, "--policy", help="Harness policy: JSON or @file."),
    priority: str = typer.Option("normal", "--priority", help="low | normal | high"),
    reason: str = typer.Option("", "--reason"),
    learner: str | None = typer.Option(None, "--learner", help="Learner id (learner_model jobs)."),
    pseudonym: bool = typer.Option(False, "--pseudonym", help="--learner is the stored pseudonym."),
    max_attempts: int = typer.Option(1, "--max-attempts", min=1, help="Requeue after a dead worker this often."),
    as_json: bool = JsonOption,
) -> None:
    """Queue a trainer job (a worker runs it)."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.jobs import submit_job

    cfg = settings()
    learner_pseudonym = None if learner is None else stored_learner(learner, pseudonym)
    job = submit_job(registry=registry(threads=True), settings=cfg, kind=kind,
                     datasheet=_json_arg(datasheet, "datasheet"),
                     created_by=current_user(), config=_json_arg(config, "config"), policy=_json_arg(policy, "policy"),
                     priority=priority, reason=reason, learner_pseudonym=learner_pseudonym, max_attempts=max_attempts)
    emit(job.to_dict() if as_json else job, as_json=as_json, render=lambda j: console.print(_job_line(j)))


@jobs_app.command("list")
def jobs_list(
    status: str | None = typer.Option(None, "--status"),
    model: str | None = typer.Option(None, "--model"),
    kind: str | None = typer.Option(None, "--kind"),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    offset: int = typer.Option(0, "--offset", min=0),
    as_json: bool = JsonOption,
) -> None:
    """Trainer jobs, newest first."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.jobs import find_jobs

    page = find_jobs(registry=registry(threads=True), status=status, model_id=model, kind=kind, limit=limit,
                     offset=offset)

    def render(p) -> None:
        table = Table(title=f"trainer jobs ({p.total} in all)")
        for col in ("id", "kind", "model", "status", "priority", "created", "progress", "candidate", "error"):
            table.add_column(col)
        for j in p.jobs:
            progress = j.progress.get("stage", "")
            if j.progress.get("fraction") is not None and j.is_open:
                progress += f" {j.progress['fraction']:.0%}"
            table.add_row(str(j.id), j.kind, j.model_id[:40], j.status, j.priority,
                          j.created_at.isoformat(timespec="seconds"), progress, j.candidate_version or "",
                          (j.error or "")[:50])
        console.print(table)

    emit(page.to_dict() if as_json else page, as_json=as_json, render=render)


@jobs_app.command("show")
def jobs_show(job_id: int = typer.Argument(..., help="Job id (from `aivo jobs list`)."),
              as_json: bool = JsonOption) -> None:
    """One trainer job: status, datasheet, progress, metrics, evaluation and lease."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.jobs import fetch_job

    job = fetch_job(registry=registry(threads=True), job_id=job_id)

    def render(j) -> None:
        for key, value in j.to_dict().items():
            shown = json.dumps(value) if isinstance(value, (dict, list)) else value
            console.print(f"[bold]{key:>18}[/]: {shown}", highlight=False, soft_wrap=True)

    emit(job.to_dict() if as_json else job, as_json=as_json, render=render)


@jobs_app.command("cancel")
def jobs_cancel(job_id: int = typer.Argument(...), as_json: bool = JsonOption) -> None:
    """Cancel a job: at once when queued; a running one stops within seconds."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.jobs import cancel

    job = cancel(registry=registry(threads=True), job_id=job_id)
    emit(job.to_dict() if as_json else job, as_json=as_json,
         render=lambda j: console.print(_job_line(j) + ("" if j.status == "cancelled" else " (stopping)")))


@jobs_app.command("evaluate")
def jobs_evaluate(
    job_id: int = typer.Argument(...),
    policy: str | None = typer.Option(None, "--policy", help="Thresholds to apply: JSON or @file (default: the job's)."),
    wait: float = typer.Option(0.0, "--wait", min=0, help="Wait up to this many seconds for a worker to finish it."),
    as_json: bool = JsonOption,
) -> None:
    """Queue the evaluation harness on a job's candidate; GET it with `--wait` or `aivo jobs show`."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.jobs import evaluation_status, request_evaluation

    reg = registry(threads=True)
    request_evaluation(registry=reg, job_id=job_id, created_by=current_user(), policy=_json_arg(policy, "policy"))
    status = evaluation_status(registry=reg, job_id=job_id)
    deadline = time.monotonic() + wait
    while status.status == "pending" and time.monotonic() < deadline:
        time.sleep(0.5)
        status = evaluation_status(registry=reg, job_id=job_id)

    def render(s) -> None:
        if s.status == "pending":
            console.print(f"evaluation of job {job_id} queued (job {s.evaluation_job.id}); a worker runs it")
        else:
            console.print(f"job {job_id}: {'[green]passed[/]' if s.passed else '[red]failed[/]'} - "
                          f"{(s.evaluation or {}).get('summary', '')}")

    emit(status.to_dict() if as_json else status, as_json=as_json, render=render)


@jobs_app.command("promote")
def jobs_promote(job_id: int = typer.Argument(...), reason: str | None = typer.Option(None, "--reason"),
                 as_json: bool = JsonOption) -> None:
    """Promote a job's candidate (only once its evaluation passed)."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.jobs import promote_job

    job = promote_job(registry=registry(threads=True), job_id=job_id, actor=current_user(), reason=reason)
    emit(job.to_dict() if as_json else job, as_json=as_json, render=lambda j: console.print(_job_line(j)))


# --- aivo scheduler ---------------------------------------------------------------------------
@scheduler_app.command("run")
def scheduler_run(
    worker: bool = typer.Option(True, "--worker/--no-worker",
                                help="Also run one in-process trainer worker (embedded mode)."),
) -> None:
    """Run the scheduler until SIGTERM/SIGINT. Several may run: one leads, the others stand by."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.scheduler import make_scheduler

    cfg = settings()
    scheduler = make_scheduler(registry=registry(threads=True), settings=cfg, run_worker=worker).start()
    console.print(f"scheduler {scheduler.instance_id} running (timezone {cfg.timezone}); stop with Ctrl-C",
                  highlight=False)
    stop = threading.Event()
    _until_signal(stop)
    stop.wait()
    scheduler.stop()


@scheduler_app.command("status")
def scheduler_status_cmd(as_json: bool = JsonOption) -> None:
    """Jobs with their next run and trigger, models training, last training, the lease holder."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.scheduler import scheduler_status

    status = scheduler_status(registry=registry(threads=True), settings=settings())

    def render(doc) -> None:
        s = doc["scheduler"]
        console.print(f"scheduler: {'running (' + s['leader'] + ')' if s['running'] else 'not running'}, "
                      f"timezone {s['timezone']}", highlight=False)
        table = Table()
        for col in ("job", "trigger", "next run", "last run"):
            table.add_column(col)
        for j in s["jobs"]:
            last = j["last_run"]
            table.add_row(j["id"], j["trigger"], j["next_run"] or "-",
                          "-" if last is None else f"{last['status']} ({last['scheduled_for']})")
        console.print(table)
        training = ", ".join(f"{m['model_id']} (job {m['job_id']}, {m['status']})" for m in s["models_training"])
        console.print(f"models training: {training or 'none'}", highlight=False)
        for model, at in s["last_training"].items():
            console.print(f"last training of {model}: {at}", highlight=False)

    emit(status, as_json=as_json, render=render)


@scheduler_app.command("trigger")
def scheduler_trigger(
    model_id: str = typer.Argument("aivo-main-brain"),
    reason: str = typer.Option("manual", "--reason"),
    priority: str = typer.Option("high", "--priority"),
    force: bool = typer.Option(True, "--force/--no-force", help="Ignore MIN_TRAINING_INTERVAL_HOURS."),
    as_json: bool = JsonOption,
) -> None:
    """Queue training of a model now (a worker runs it)."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.scheduler import trigger_training

    decision = trigger_training(registry=registry(threads=True), settings=settings(), model_id=model_id, reason=reason,
                                priority=priority, force=force, actor=current_user())
    emit(decision.to_dict() if as_json else decision, as_json=as_json,
         render=lambda d: console.print(f"{d.model_id}: {d.status} - {d.reason}"
                                        + (f" (job {d.job.id})" if d.job else ""), highlight=False))


# --- aivo drift -------------------------------------------------------------------------------
@drift_app.command("check")
def drift_check(
    window_days: float = typer.Option(7.0, "--window-days", help="Recent interactions: the last N days."),
    schedule: bool = typer.Option(True, "--schedule/--no-schedule", help="Schedule retraining above DRIFT_THRESHOLD."),
    as_json: bool = JsonOption,
) -> None:
    """Score the active Main Brain's drift now and store the report."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.drift import check_drift

    report = check_drift(registry=registry(threads=True), settings=settings(), window_days=window_days,
                         schedule=schedule)

    def render(r) -> None:
        score = "n/a" if r.score is None else f"{r.score:.3f}"
        mark = "[red]DRIFT[/]" if r.drifted else "[green]ok[/]"
        console.print(f"{r.model_id} ({r.version}): drift_score={score} (threshold {r.threshold}) {mark}")
        for name in ("input", "prediction", "performance"):
            value = r.signals.get(name)
            console.print(f"  {name:>11}: {'n/a' if value is None else f'{value:.3f}'}")
        if r.action.get("status"):
            console.print(f"  retraining: {r.action['status']} - {r.action.get('reason', '')}", highlight=False)

    emit(report.to_dict() if as_json else report, as_json=as_json, render=render)


@drift_app.command("reports")
def drift_reports(model: str = typer.Option("aivo-main-brain", "--model", help="Model id."),
                  limit: int = typer.Option(10, "--limit", min=1, help="Most recent reports shown."),
                  as_json: bool = JsonOption) -> None:
    """Stored drift reports of a model, newest first (score and its three signals)."""
    # start-up: the service (and torch) loads only when the command runs
    from aivo.services.drift import drift_reports

    reports = drift_reports(registry=registry(threads=True), model_id=model, limit=limit)

    def render(rows) -> None:
        table = Table(title=f"drift reports of {model}")
        for col in ("id", "computed", "version", "score", "input", "prediction", "performance", "drifted"):
            table.add_column(col)
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        for r in rows:
            table.add_row(str(r.id), r.computed_at.isoformat(timespec="seconds"), r.version or "", fmt(r.score),
                          fmt(r.signals.get("input")), fmt(r.signals.get("prediction")),
                          fmt(r.signals.get("performance")), "yes" if r.drifted else "no")
        console.print(table)

    emit([r.to_dict() for r in reports] if as_json else reports, as_json=as_json, render=render)
