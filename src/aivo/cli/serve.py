"""`aivo serve` (the HTTP API under uvicorn) and `aivo apikey create|list|revoke|link|unlink`."""

from __future__ import annotations

import os
import tempfile

import typer
from rich.table import Table

from aivo.cli.app import JsonOption, app, console, current_user, emit, err_console, registry, settings
from aivo.config import get_settings
from aivo.errors import ConfigError

apikey_app = typer.Typer(help="API keys: create (shown once), list, revoke, teacher class lists.",
                         no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")

LearnersOption = typer.Option([], "--learner", "-l",
                              help="A learner on a teacher key's class list (repeat, or comma-separated).")
PseudonymOption = typer.Option(False, "--pseudonym", help="Learner ids are stored pseudonyms, not raw ids.")


def _learner_pseudonyms(values: list[str], *, is_pseudonym: bool) -> list[str]:
    from aivo.services.learners import learner_pseudonym  # start-up: loads the registry's libraries

    ids = [v.strip() for value in values for v in value.split(",") if v.strip()]
    cfg = settings()
    return [learner_pseudonym(settings=cfg, learner_id=i, is_pseudonym=is_pseudonym) for i in ids]


@app.command("serve")
def serve(
    host: str | None = typer.Option(None, "--host", help="Interface to listen on [AIVO_API_HOST]."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Port [AIVO_API_PORT]."),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, help="Worker processes [AIVO_API_WORKERS]."),
    scheduler: bool | None = typer.Option(None, "--scheduler/--no-scheduler",
                                          help="Run the training scheduler in the API process (single worker "
                                               "only) [AIVO_SCHEDULER_ENABLED]."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request (costs CPU under load; the "
                                    "lines hold raw URLs, learner ids included)."),
) -> None:
    """Run the AIVO API (OpenAPI docs at /docs). With several workers the scheduler must run on
    its own: `aivo scheduler run`."""
    import uvicorn  # start-up: the server loads only for `aivo serve`

    cfg = settings()
    host = host or cfg.api_host
    port = port or cfg.api_port
    workers = workers or cfg.api_workers
    if scheduler and workers > 1:
        raise ConfigError(f"the scheduler runs inside the API only with one worker (asked for {workers}); "
                          "drop --scheduler and run `aivo scheduler run` as its own process")
    cfg.resolved_secret_key()  # a missing or weak production key stops here, before the database is touched
    registry()  # a missing or outdated schema stops here, with its message, before any worker starts
    # Workers build their app from the environment (create_app() reads Settings): pass the choices on.
    os.environ["AIVO_API_WORKERS"] = str(workers)
    if scheduler is not None:
        os.environ["AIVO_SCHEDULER_ENABLED"] = "true" if scheduler else "false"
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="aivo-metrics-")
    get_settings.cache_clear()
    in_api = get_settings().scheduler_enabled and workers == 1
    err_console.print(f"AIVO API on http://{host}:{port} ({workers} worker{'s' if workers > 1 else ''}; "
                      f"scheduler {'in this process' if in_api else 'not in this process'}); docs at /docs")
    uvicorn.run("aivo.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=cfg.log_level.lower(), access_log=access_log, proxy_headers=True)


@apikey_app.command("create")
def apikey_create(
    role: str = typer.Option(..., "--role", help="admin, service or teacher."),
    tenant: str = typer.Option(..., "--tenant", help="School or district the key belongs to."),
    name: str = typer.Option("", "--name", help="A label (who or what uses the key)."),
    learners: list[str] = LearnersOption,
    is_pseudonym: bool = PseudonymOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a key. The token is printed once and never stored: keep it now."""
    pseudonyms = _learner_pseudonyms(learners, is_pseudonym=is_pseudonym)
    from aivo.services import api_keys  # start-up: loads the registry's libraries

    created = api_keys.create_key(registry=registry(), role=role, tenant=tenant, name=name, learner_ids=pseudonyms,
                                  actor=current_user())

    def render(_) -> None:
        key = created.key
        console.print(f"created {key.role} key [bold]{key.key_id}[/] for tenant {key.tenant}"
                      + (f" with {key.num_learners} learner(s)" if key.role == "teacher" else ""))
        console.print("token (shown once, store it now):")
        console.print(created.token, highlight=False, soft_wrap=True)

    emit({"key": created.key.to_dict(), "token": created.token}, as_json=as_json, render=render)


@apikey_app.command("list")
def apikey_list(
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant's keys."),
    include_revoked: bool = typer.Option(False, "--all", help="Include revoked keys."),
    as_json: bool = JsonOption,
) -> None:
    """Keys (never their tokens)."""
    from aivo.services import api_keys  # start-up: loads the registry's libraries

    keys = api_keys.keys(registry=registry(), tenant=tenant, include_revoked=include_revoked)

    def render(_) -> None:
        table = Table(title=f"{len(keys)} API key(s)")
        for col in ("key_id", "role", "tenant", "name", "learners", "created", "last used", "revoked"):
            table.add_column(col)
        for k in keys:
            table.add_row(k.key_id, k.role, k.tenant, k.name, str(k.num_learners) if k.role == "teacher" else "",
                          k.created_at.strftime("%Y-%m-%d %H:%M"),
                          k.last_used_at.strftime("%Y-%m-%d %H:%M") if k.last_used_at else "",
                          k.revoked_at.strftime("%Y-%m-%d %H:%M") if k.revoked_at else "")
        console.print(table)

    emit([k.to_dict() for k in keys], as_json=as_json, render=render)


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: str = typer.Argument(..., help="The key's id (from `aivo apikey list`)."),
    reason: str = typer.Option("", "--reason", help="Kept in the audit log."),
    as_json: bool = JsonOption,
) -> None:
    """Revoke a key. Running API processes stop accepting it within AIVO_API_KEY_CACHE_S seconds."""
    from aivo.services import api_keys  # start-up: loads the registry's libraries

    record = api_keys.revoke_key(registry=registry(), key_id=key_id, actor=current_user(), reason=reason)
    emit(record.to_dict(), as_json=as_json, render=lambda _: console.print(f"revoked {record.key_id}"))


def _relink(key_id: str, learners: list[str], is_pseudonym: bool, *, add: bool, as_json: bool) -> None:
    pseudonyms = _learner_pseudonyms(learners, is_pseudonym=is_pseudonym)
    from aivo.services import api_keys  # start-up: loads the registry's libraries

    count = api_keys.relink(registry=registry(), key_id=key_id, learner_ids=pseudonyms, actor=current_user(), add=add)
    verb = "linked" if add else "unlinked"
    emit({"key_id": key_id, verb: count}, as_json=as_json,
         render=lambda _: console.print(f"{verb} {count} learner(s) {'to' if add else 'from'} {key_id}"))


@apikey_app.command("link")
def apikey_link(
    key_id: str = typer.Argument(..., help="A teacher key's id."),
    learners: list[str] = typer.Argument(..., help="Learner ids (raw, or pseudonyms with --pseudonym)."),
    is_pseudonym: bool = PseudonymOption,
    as_json: bool = JsonOption,
) -> None:
    """Add learners to a teacher key's class list (learners not yet known are created in its tenant)."""
    _relink(key_id, learners, is_pseudonym, add=True, as_json=as_json)


@apikey_app.command("unlink")
def apikey_unlink(
    key_id: str = typer.Argument(..., help="A teacher key's id."),
    learners: list[str] = typer.Argument(..., help="Learner ids (raw, or pseudonyms with --pseudonym)."),
    is_pseudonym: bool = PseudonymOption,
    as_json: bool = JsonOption,
) -> None:
    """Remove learners from a teacher key's class list."""
    _relink(key_id, learners, is_pseudonym, add=False, as_json=as_json)

