"""`aivo db ...`, `aivo registry ...`, `aivo learner ...` and `aivo data import`.

Thin: parse options, open the registry, call one registry function, print the result.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from aivo.cli.app import (JsonOption, app, console, current_user, emit, err_console, registry, settings,
                          stored_learner)
from aivo.cli.data import MapOption, data_app, parse_column_map

db_app = typer.Typer(help="Registry database schema.", no_args_is_help=True)
registry_app = typer.Typer(help="Main versions, learner models, statistics, artifacts.", no_args_is_help=True)
learner_app = typer.Typer(help="Learner data rights: export and erasure.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(registry_app, name="registry")
app.add_typer(learner_app, name="learner")

ActorOption = typer.Option(None, "--actor", help="Who is acting (default: the OS user).")
PseudonymOption = typer.Option(False, "--pseudonym",
                               help="ID is already the stored pseudonym (not the raw learner id).")


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    return table


def _kv(record: dict[str, Any]) -> None:
    for key, value in record.items():
        shown = json.dumps(value) if isinstance(value, (dict, list)) else value
        console.print(f"[bold]{key:>22}[/]: {shown}", highlight=False, soft_wrap=True)


# --- aivo db ----------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Option("head", "--revision", help="Target revision."),
    as_json: bool = JsonOption,
) -> None:
    """Create or migrate the registry schema to the newest revision."""
    from aivo.services import registry as registry_ops  # start-up: loads the registry's libraries

    out = registry_ops.upgrade_schema(settings=settings(), revision=revision)
    emit(out, as_json=as_json, render=lambda r: console.print(
        f"schema {'upgraded from ' + (r['from_revision'] or 'empty') if r['changed'] else 'already'} "
        f"at revision {r['to_revision']} ({r['database']})"))


@db_app.command("status")
def db_status(as_json: bool = JsonOption) -> None:
    """Show the database's schema revision and the one this AIVO needs."""
    from aivo.services import registry as registry_ops  # start-up: loads the registry's libraries

    out = registry_ops.schema_status(settings=settings())
    emit(out, as_json=as_json, render=_kv)


# --- aivo registry ----------------------------------------------------------------------------
@registry_app.command("stats")
def registry_stats(as_json: bool = JsonOption) -> None:
    """Counts of versions, learners, models, sessions and updates; mean learner performance."""
    from aivo.services import registry as registry_ops  # start-up: loads the registry's libraries

    stats = registry_ops.statistics(registry=registry()).to_dict()
    emit(stats, as_json=as_json, render=_kv)


@registry_app.command("list")
def registry_list(
    learners: bool = typer.Option(False, "--learners", help="List learner models instead of main versions."),
    status: str = typer.Option(None, "--status", help="Only this status."),
    limit: int = typer.Option(50, "--limit", min=1),
    offset: int = typer.Option(0, "--offset", min=0),
    as_json: bool = JsonOption,
) -> None:
    """List main versions (newest first), or learner models with --learners."""
    from aivo.services import models  # start-up: the Main Brain's libraries load only for this command
    from aivo.services import registry as registry_ops  # start-up: loads the registry's libraries

    if learners:
        rows = [m.to_dict() for m in registry_ops.learner_models(registry=registry(), status=status, limit=limit,
                                                                 offset=offset)]
    else:
        rows = [v.to_dict() for v in models.list_versions(registry=registry(), status=status, limit=limit,
                                                          offset=offset)]

    def render(items: list[dict]) -> None:
        if learners:
            cols = ["learner_id", "kind", "status", "source_version", "performance", "last_trained_at"]
            console.print(_table("learner models", cols, [[r[c] for c in cols] for r in items]))
        else:
            cols = ["version", "status", "parent_version", "created_at", "activated_at"]
            console.print(_table("main versions", cols + ["metrics"],
                                 [[r[c] for c in cols] + [json.dumps(r["training_metrics"])] for r in items]))

    emit(rows, as_json=as_json, render=render)


@registry_app.command("show")
def registry_show(
    version: str = typer.Argument(None, help="Main version to show."),
    learner: str = typer.Option(None, "--learner", help="Show this learner's model and its history instead."),
    is_pseudonym: bool = PseudonymOption,
    kind: str = typer.Option("brain", "--kind", help="Learner model kind."),
    as_json: bool = JsonOption,
) -> None:
    """Show a main version, or a learner model with its training history."""
    from aivo.services import registry as registry_ops  # start-up: loads the registry's libraries

    if (version is None) == (learner is None):
        raise typer.BadParameter("give either a VERSION or --learner ID", param_hint="VERSION")
    if version is not None:
        from aivo.services import models  # start-up: the Main Brain's libraries load only for this command

        out = models.get_version(registry=registry(), version=version).to_dict()
    else:
        out = registry_ops.learner_history(registry=registry(), learner_id=stored_learner(learner, is_pseudonym),
                                           kind=kind).to_dict()

    def render(r: dict) -> None:
        if "sessions" not in r:
            _kv(r)
            return
        _kv(r["model"])
        cols = ["id", "trained_at", "main_version", "samples", "final_loss", "final_accuracy", "epsilon_spent",
                "contributed"]
        console.print(_table("training sessions", cols, [[s[c] for c in cols] for s in r["sessions"]]))

    emit(out, as_json=as_json, render=render)


@registry_app.command("promote")
def registry_promote(
    version: str = typer.Argument(..., help="Version to activate."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log)."),
    actor: str = ActorOption,
    as_json: bool = JsonOption,
) -> None:
    """Make VERSION the active main version (the current one is archived). Audited."""
    from aivo.services import models  # start-up: the Main Brain's libraries load only for this command

    out = models.promote_version(registry=registry(), version=version, actor=actor or current_user(),
                                 reason=reason).to_dict()
    emit(out, as_json=as_json, render=lambda r: console.print(f"[green]{r['version']}[/] is now active"))


@registry_app.command("rollback")
def registry_rollback(
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log)."),
    to: str = typer.Option(None, "--to", help="Version to reactivate (default: the previously active one)."),
    actor: str = ActorOption,
    as_json: bool = JsonOption,
) -> None:
    """Reactivate the previously active main version (or --to VERSION). Audited."""
    from aivo.services import models  # start-up: the Main Brain's libraries load only for this command

    out = models.rollback_version(registry=registry(), actor=actor or current_user(), reason=reason,
                                  to_version=to).to_dict()
    emit(out, as_json=as_json, render=lambda r: console.print(f"rolled back: [green]{r['version']}[/] is active"))


@registry_app.command("gc")
def registry_gc(
    apply: bool = typer.Option(False, "--apply", help="Delete (the default is a dry run that only reports)."),
    min_age_hours: float = typer.Option(1.0, "--min-age-hours", min=0,
                                        help="Keep unreferenced artifacts younger than this."),
    actor: str = ActorOption,
    as_json: bool = JsonOption,
) -> None:
    """Find unreferenced artifacts; delete them with --apply."""
    from aivo.services import registry as registry_ops  # start-up: loads the registry's libraries

    result = registry_ops.garbage_collection(registry=registry(), apply=apply, min_age_s=min_age_hours * 3600,
                                             actor=actor or current_user())

    def render(r: dict) -> None:
        verb = "deleted" if apply else "would delete (dry run; --apply to delete)"
        console.print(f"{r['stored']} artifacts stored, {r['referenced']} referenced; {verb}: "
                      f"{len(r['deleted'] if apply else r['unreferenced'])} ({r['bytes_reclaimable']} bytes); "
                      f"{r['kept_recent']} recent unreferenced kept")

    emit(result, as_json=as_json, render=render)


@registry_app.command("verify")
def registry_verify(
    deep: bool = typer.Option(False, "--deep", help="Also re-hash every referenced artifact."),
    as_json: bool = JsonOption,
) -> None:
    """Check that every referenced artifact exists (and with --deep, is intact). Exit 6 if not."""
    from aivo.services import registry as registry_ops  # start-up: loads the registry's libraries

    check = registry_ops.verify(registry=registry(), deep=deep)

    def render(r: dict) -> None:
        for problem in r["problems"]:
            err_console.print(f"[red]problem:[/] {problem}", highlight=False)
        console.print(f"{'OK' if r['ok'] else 'NOT OK'}: {r['referenced_artifacts']} referenced artifacts, "
                      f"{r['active_versions']} active version(s)")

    emit(check, as_json=as_json, render=render)
    if not check["ok"]:
        raise typer.Exit(6)


# --- aivo learner -----------------------------------------------------------------------------
@learner_app.command("delete")
def learner_delete(
    learner: str = typer.Argument(..., help="Learner id (raw, pseudonymized here; or --pseudonym)."),
    is_pseudonym: bool = PseudonymOption,
    reason: str = typer.Option("learner data deletion request", "--reason"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    actor: str = ActorOption,
    as_json: bool = JsonOption,
) -> None:
    """Erase a learner: interactions, models, sessions and artifacts. Keeps an anonymous audit entry."""
    from aivo.services.learners import erase_learner  # start-up: loads the registry's libraries

    learner_id = stored_learner(learner, is_pseudonym)
    reg = registry()
    if not yes:
        if not sys.stdin.isatty():
            raise typer.BadParameter("refusing to erase without confirmation; pass --yes", param_hint="--yes")
        typer.confirm(f"Erase everything held about learner {learner}?", abort=True)
    result = erase_learner(registry=reg, learner_id=learner_id, actor=actor or current_user(), reason=reason)
    out = {"deleted": True, "rows_deleted": result.rows_deleted, "artifacts_deleted": result.artifacts_scheduled}
    emit(out, as_json=as_json, render=lambda r: console.print(
        f"learner erased: {sum(r['rows_deleted'].values())} rows, {r['artifacts_deleted']} artifacts"))


@learner_app.command("export")
def learner_export(
    learner: str = typer.Argument(..., help="Learner id (raw, pseudonymized here; or --pseudonym)."),
    is_pseudonym: bool = PseudonymOption,
    out: Path = typer.Option(None, "--out", "-o", help="Write the JSON here (default: stdout)."),
    inline_artifacts: bool = typer.Option(False, "--inline-artifacts", help="Include artifact bytes (base64)."),
) -> None:
    """Write everything held about a learner as JSON."""
    from aivo.services.learners import export_learner_data  # start-up: the registry's libraries

    document = export_learner_data(registry=registry(), learner_id=stored_learner(learner, is_pseudonym),
                                   inline_artifacts=inline_artifacts)
    text = json.dumps(document, indent=2)
    if out is None:
        sys.stdout.write(text + "\n")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        err_console.print(f"wrote {out} ({sum(len(v) for v in document['data'].values())} rows, "
                          f"{len(document['artifacts'])} artifacts)")


# --- aivo data import -------------------------------------------------------------------------
@data_app.command("import")
def data_import(
    path: Path = typer.Argument(..., help="Interaction file (KT three-line, CSV or Parquet)."),
    format: str = typer.Option("auto", "--format", "-f", help="Input format."),
    column_map: list[str] = MapOption,
    tenant: str = typer.Option("default", "--tenant", help="Tenant (school/district) of these learners."),
    as_json: bool = JsonOption,
) -> None:
    """Import interactions into the registry: learner ids pseudonymized, idempotent per (learner, order)."""
    from aivo.services import registry as registry_ops  # start-up: loads the registry's libraries

    cfg = settings()
    reg = registry()
    cfg.resolved_secret_key()  # before the spinner: a missing key is reported at once
    with console.status(f"importing {path} ...", spinner="dots") if not as_json else nullcontext():
        result = registry_ops.import_file(registry=reg, settings=cfg, path=path, format=format,
                                          mapping=parse_column_map(column_map) or None, tenant=tenant)
    def render(r: dict) -> None:
        console.print(f"imported {r['rows_inserted']} of {r['rows_read']} interactions ({r['rows_skipped']} already "
                      f"present); {r['learners']} learners ({r['learners_created']} new) in tenant {r['tenant']}")
        if r.get("dropped_columns"):
            console.print(f"not stored: {', '.join(r['dropped_columns'])} (the simulator's truth is evaluation-only "
                          "data, never ingested)")

    emit(result.to_dict(), as_json=as_json, render=render)

