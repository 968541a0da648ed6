"""`aivo site ...` and `aivo federation ...`: federation across sites on Flower.

Thin: parse options, call one service function (aivo.services.site / .federation), print a
table or `--json`. `serve` commands hand over to Flower's own processes (`flower-superlink`,
`flower-supernode`) with the right certificates, keys and environment.
"""

from __future__ import annotations

import functools
import inspect
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from aivo.cli.app import JsonOption, app, console, emit, err_console, settings, to_jsonable
from aivo.errors import ConfigError

site_app = typer.Typer(help="This registry as a site of a federation (a school or district).", no_args_is_help=True)
federation_app = typer.Typer(help="The coordinator of a federation across sites (Flower).", no_args_is_help=True)
app.add_typer(site_app, name="site")
app.add_typer(federation_app, name="federation")

SuperlinkOption = typer.Option(None, "--superlink", help="host:port of the SuperLink [AIVO_SUPERLINK].")
RootCertOption = typer.Option(None, "--root-certificates", exists=True, dir_okay=False,
                              help="CA certificate of the SuperLink [AIVO_FEDERATION_ROOT_CERTIFICATES].")
InsecureOption = typer.Option(False, "--insecure", help="No TLS (local tests only: traffic is not encrypted).")


def _registry():
    from aivo.services.runtime import open_registry  # start-up: services load torch  # start-up

    return open_registry(settings())


def _warn(lines: list[str]) -> None:
    for line in lines:
        err_console.print(f"[bold yellow]warning:[/] {line}", highlight=False, soft_wrap=True)


def _exec(argv: list[str], env: dict[str, str]) -> None:
    """Become the Flower process (signals, exit code and logs are its own)."""
    err_console.print("exec: " + " ".join(argv), highlight=False, soft_wrap=True)
    os.execvpe(argv[0], argv, env)


# --- round options shared by `federation run` and `federation simulate` ---------------------------
def _round_options(
    rounds: int = typer.Option(1, "--rounds", min=1, help="Federated rounds."),
    min_sites: int = typer.Option(2, "--min-sites", min=1, help="Sites that must be ready for a round."),
    secure: bool = typer.Option(True, "--secure-aggregation/--no-secure-aggregation",
                                help="SecAgg+: the coordinator sees only the sum across sites."),
    max_dropout: float = typer.Option(0.34, "--max-dropout", help="Share of sites a secure round may lose (< 0.5)."),
    round_timeout: float = typer.Option(600.0, "--round-timeout", help="Seconds each stage waits for the sites."),
    wait_for_sites: float = typer.Option(60.0, "--wait-for-sites",
                                         help="Seconds to wait for --min-sites to connect (a simulation: for all "
                                              "its sites)."),
    strategy: str | None = typer.Option(None, "--strategy", help="fedavg | fedprox | weighted | median | trimmed-mean."),
    allow_site_sums: bool = typer.Option(False, "--allow-site-sums",
                                         help="median/trimmed-mean without secure aggregation: the coordinator sees "
                                              "every site's sum."),
    dp: bool | None = typer.Option(None, "--dp/--no-dp", help="User-level DP [AIVO_ENABLE_DIFFERENTIAL_PRIVACY]."),
    noise_multiplier: float | None = typer.Option(None, "--noise-multiplier", min=0.0, help="[AIVO_NOISE_MULTIPLIER]"),
    clip_norm: float | None = typer.Option(None, "--clip-norm", help="[AIVO_CLIP_NORM]"),
    sampling_rate: float | None = typer.Option(None, "--sampling-rate", help="Poisson rate q at every site."),
    epsilon_budget: float | None = typer.Option(None, "--epsilon-budget", help="[AIVO_EPSILON_BUDGET]"),
    delta: float | None = typer.Option(None, "--delta", help="[AIVO_DELTA]"),
    learning_rate: float | None = typer.Option(None, "--learning-rate", help="Server step [AIVO_SERVER_LEARNING_RATE]."),
    local_epochs: int | None = typer.Option(None, "--local-epochs", min=0, help="[AIVO_LOCAL_EPOCHS]"),
    local_learning_rate: float | None = typer.Option(None, "--local-learning-rate", help="[AIVO_LOCAL_LEARNING_RATE]"),
    gate_margin: float | None = typer.Option(None, "--gate-margin", min=0.0, help="[AIVO_GATE_MARGIN]"),
    seed: int | None = typer.Option(None, "--seed", help="Reproducible sampling and noise (testing only)."),
) -> dict[str, Any]:
    return dict(rounds=rounds, min_sites=min_sites, secure_aggregation=secure, secagg_max_dropout=max_dropout,
                round_timeout=round_timeout, wait_for_sites=wait_for_sites, strategy=strategy,
                allow_robust_without_secagg=allow_site_sums, dp_enabled=dp, noise_multiplier=noise_multiplier,
                clip_norm=clip_norm, sample_rate=sampling_rate, epsilon_budget=epsilon_budget, delta=delta,
                server_learning_rate=learning_rate, local_epochs=local_epochs,
                local_learning_rate=local_learning_rate, gate_margin=gate_margin, seed=seed)


def with_round_options(command):
    """Add `_round_options`' parameters to `command`, which receives them as `round_options`."""
    def resolved(fn) -> list[inspect.Parameter]:  # annotations are strings (PEP 563): typer needs types
        hints = typing.get_type_hints(fn)
        return [p.replace(annotation=hints.get(p.name, p.annotation)) for p in inspect.signature(fn).parameters.values()]

    extra = resolved(_round_options)
    own = [p for p in resolved(command) if p.name != "round_options"]

    @functools.wraps(command)
    def wrapper(**kwargs):
        values = {p.name: kwargs.pop(p.name) for p in extra}
        return command(round_options=_round_options(**values), **kwargs)

    wrapper.__signature__ = inspect.Signature(own + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in extra])
    wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
    del wrapper.__wrapped__  # typer must read the signature above, not the command's own
    return wrapper


def _options(round_options: dict[str, Any]):
    from aivo.services.federation import options_from_settings  # start-up

    options = options_from_settings(settings(), **round_options)
    _warn(options.warnings())
    if options.strategy in ("median", "trimmed-mean") and not options.secure_aggregation:
        _warn([f"{options.strategy}: the coordinator combines the sites' individual sums, which it sees"])
    return options


def _render_report(r: dict) -> None:
    console.print(f"{r['runtime']}: {len(r['rounds'])} round(s) in {r['seconds']:.1f}s; version "
                  f"{r['version_before']} -> {r['version_after']}")
    for rnd in r["rounds"]:
        style = {"applied": "green", "rejected": "yellow", "failed": "red"}.get(rnd["status"], "white")
        console.print(f"[bold {style}]{rnd['status']}[/]: {rnd.get('message')}", highlight=False, soft_wrap=True)
        counts = rnd.get("counts") or {}
        if counts:
            console.print("  " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
        privacy = rnd.get("privacy") or {}
        if privacy.get("epsilon_round") is not None:
            console.print(f"  user-level DP: epsilon {privacy['epsilon_round']:.3g} this round, "
                          f"{privacy['epsilon_federation']:.3g} over the federation's rounds "
                          f"(delta {privacy['delta']:g})")
        table = Table(title_justify="left")
        for col in ("site", "status", "reason"):
            table.add_column(col, overflow="fold")
        for site in rnd.get("sites") or []:
            table.add_row(str(site.get("site") or site.get("node_id")), site.get("status", ""), site.get("reason", ""))
        console.print(table)


# --- aivo site ---------------------------------------------------------------------------------------
@site_app.command("init")
def site_init_cmd(name: str = typer.Argument(..., help="The site's name in the federation (e.g. school-north)."),
                  as_json: bool = JsonOption) -> None:
    """Make AIVO_HOME a site: its registry, a key pair; prints the public key to enroll."""
    from aivo.services.site_identity import init_site  # start-up

    result = init_site(settings=settings(), name=name)
    emit(to_jsonable(result), as_json=as_json, render=lambda r: console.print(
        f"site [bold]{r['name']}[/] initialized in {r['home']}\nprivate key: {r['private_key']} (keep it on this "
        f"host)\npublic key:  {r['public_key']}\ngive the public key to the coordinator: "
        f"`aivo federation enroll {r['name']} --public-key site.pub`", highlight=False, soft_wrap=True))


@site_app.command("serve")
def site_serve_cmd(
    superlink: str | None = SuperlinkOption,
    root_certificates: Path | None = RootCertOption,
    insecure: bool = InsecureOption,
    port: int = typer.Option(9094, "--port", help="Local port of the SuperNode's runtime API (loopback)."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Do not authenticate with the site key (a SuperLink "
                                                          "without --enable-supernode-auth; tests only)."),
    isolation: str = typer.Option("process", "--isolation",
                                  help="process: one long-lived site worker runs every message (loads the site "
                                       "once); subprocess: Flower starts a process per message (slow; for "
                                       "comparison)."),
) -> None:
    """Run this site's Flower SuperNode (connects to the coordinator) and the site worker that
    answers its messages with the site's ClientApp."""
    from aivo.services.federation import flower_bin, flower_env  # start-up
    from aivo.services.site_identity import site_key_path, with_site_identity  # start-up

    if isolation not in ("process", "subprocess"):
        raise ConfigError(f"--isolation must be process or subprocess, got {isolation!r}")
    cfg = with_site_identity(settings())
    if not cfg.site_name:
        raise ConfigError("this AIVO_HOME is not a site: run `aivo site init NAME` first")
    certs = root_certificates or cfg.federation_root_certificates
    argv = [flower_bin("flower-supernode"), "--superlink", superlink or cfg.superlink, "--port", str(port),
            "--host", "127.0.0.1", "--node-config", f'site="{cfg.site_name}"', "--isolation", isolation]
    if insecure:
        argv.append("--insecure")
    elif certs is None:
        raise ConfigError("the SuperLink's CA certificate is needed (--root-certificates or "
                          "AIVO_FEDERATION_ROOT_CERTIFICATES); --insecure only for local tests")
    else:
        argv += ["--root-certificates", str(Path(certs).resolve())]
    if not no_auth:
        argv += ["--auth-supernode-private-key", str(site_key_path(cfg).resolve())]
    env = flower_env(cfg)
    env.update(AIVO_HOME=str(cfg.home.resolve()), AIVO_SITE_NAME=cfg.site_name,
               AIVO_SITE_KEY=str(site_key_path(cfg).resolve()))
    if isolation == "process":
        # The worker outlives nothing: it watches this pid, which becomes the SuperNode's at exec,
        # as Flower's own SuperExec watches its SuperNode.
        subprocess.Popen([sys.executable, "-m", "aivo", "site", "worker", "--runtime-api", f"127.0.0.1:{port}",
                          "--parent-pid", str(os.getpid())], env=env)
    _exec(argv, env)


@site_app.command("worker", hidden=True)
def site_worker_cmd(
    runtime_api: str = typer.Option(..., "--runtime-api", help="host:port of the SuperNode's runtime API."),
    parent_pid: int | None = typer.Option(None, "--parent-pid", help="Exit when this process (the SuperNode) ends."),
) -> None:
    """The site worker that `aivo site serve` starts next to its SuperNode (`--isolation process`)."""
    from aivo.services.site_identity import serve_site_worker  # start-up

    try:
        serve_site_worker(settings=settings(), runtime_api=runtime_api, parent_pid=parent_pid)
    except KeyboardInterrupt:
        err_console.print("site worker stopped", highlight=False)


@site_app.command("status")
def site_status_cmd(limit: int = typer.Option(10, "--limit", min=1), as_json: bool = JsonOption) -> None:
    """This site: its version, learners, clones, and what it sent in recent rounds."""
    from aivo.services.site import site_status  # start-up
    from aivo.services.site_identity import with_site_identity  # start-up

    status = site_status(registry=_registry(), settings=with_site_identity(settings()), limit=limit)

    def render(r: dict) -> None:
        console.print(f"site {r['name'] or '(not initialized)'} in {r['home']}: version {r['version']}, "
                      f"{r['learners']} learners, {r['clones']} clones, {r['interactions']} interactions")
        table = Table(title="rounds (what this site sent)", title_justify="left")
        for col in ("round", "version", "status", "pool", "sampled", "accepted", "sum norm", "reason"):
            table.add_column(col)
        for rnd in r["rounds"]:
            table.add_row(rnd["round_ref"], rnd["version"], rnd["status"], str(rnd["num_pool"]),
                          str(rnd["num_sampled"]), str(rnd["num_accepted"]),
                          "-" if rnd["payload_norm"] is None else f"{rnd['payload_norm']:.4g}", rnd["reason"])
        console.print(table)

    emit(to_jsonable(status.to_dict()), as_json=as_json, render=render)


# --- aivo federation ---------------------------------------------------------------------------------
@federation_app.command("certificates")
def certificates_cmd(host: list[str] = typer.Option(..., "--host", help="The coordinator's DNS name or IP (repeat)."),
                     out: Path = typer.Option(None, "--out", help="Folder (default AIVO_HOME/federation/certificates)."),
                     days: int = typer.Option(365, "--days", min=1),
                     as_json: bool = JsonOption) -> None:
    """Make a private CA and the SuperLink's TLS certificate (sites get ca.crt only)."""
    from aivo.services.federation import make_certificates  # start-up

    folder = out or settings().ensure_home() / "federation" / "certificates"
    paths = make_certificates(folder, hosts=host, days=days)
    emit(to_jsonable(paths), as_json=as_json, render=lambda p: console.print(
        f"CA certificate (give to every site): {p['ca_certificate']}\nserver certificate: {p['server_certificate']}\n"
        f"server key (keep on the coordinator): {p['server_key']}", highlight=False, soft_wrap=True))


@federation_app.command("register-brain")
def register_brain_cmd(checkpoint: Path = typer.Argument(..., exists=True, file_okay=False,
                                                         help="A checkpoint folder (`aivo train-main --out DIR`)."),
                       actor: str | None = typer.Option(None, "--actor"), as_json: bool = JsonOption) -> None:
    """Register and promote a Main Brain at the coordinator: the version the sites start from."""
    from aivo.services.federation import default_actor, register_checkpoint  # start-up

    version = register_checkpoint(registry=_registry(), path=checkpoint, actor=actor or default_actor())
    emit({"version": version}, as_json=as_json, render=lambda r: console.print(
        f"{r['version']} registered and promoted at the coordinator; sites install it in their next round"))


@federation_app.command("enroll")
def enroll_cmd(name: str = typer.Argument(..., help="The site's name (as it gave it to `aivo site init`)."),
               public_key: Path = typer.Option(..., "--public-key", exists=True, dir_okay=False,
                                               help="The site's public key file (site.pub)."),
               register: bool = typer.Option(False, "--register/--no-register",
                                             help="Also register the key with the running SuperLink "
                                                  "(flwr supernode register)."),
               superlink: str | None = SuperlinkOption, root_certificates: Path | None = RootCertOption,
               insecure: bool = InsecureOption, actor: str | None = typer.Option(None, "--actor"),
               as_json: bool = JsonOption) -> None:
    """Enroll a site: only enrolled sites take part in rounds."""
    from aivo.services.federation import default_actor, enroll_site, register_with_superlink  # start-up

    record = enroll_site(registry=_registry(), name=name, public_key=public_key.read_text(),
                         actor=actor or default_actor())
    out = record.to_dict()
    out.pop("public_key")
    if register:
        out["superlink"] = register_with_superlink(settings=settings(), public_key_path=public_key,
                                                   superlink=superlink, root_certificates=root_certificates,
                                                   insecure=insecure)
    emit(out, as_json=as_json, render=lambda r: console.print(
        f"site {r['name']} enrolled (key {r['fingerprint'][:16]}...)" + (f"; SuperLink: {r['superlink']}"
                                                                          if r.get("superlink") else "")))


@federation_app.command("revoke")
def revoke_cmd(name: str = typer.Argument(...), actor: str | None = typer.Option(None, "--actor"),
               as_json: bool = JsonOption) -> None:
    """Revoke a site: it takes no part in later rounds (also run `flwr supernode unregister`)."""
    from aivo.services.federation import default_actor, revoke_site  # start-up

    record = revoke_site(registry=_registry(), name=name, actor=actor or default_actor()).to_dict()
    record.pop("public_key")
    emit(record, as_json=as_json, render=lambda r: console.print(f"site {r['name']} revoked"))


@federation_app.command("serve")
def federation_serve_cmd(
    host: str = typer.Option("0.0.0.0", "--host", help="Address the SuperLink listens on."),
    port: int = typer.Option(9092, "--port", help="The SuperLink's port (sites, `flwr run`)."),
    certificates: Path | None = typer.Option(None, "--certificates", file_okay=False,
                                             help="Folder with ca.crt, server.pem, server.key "
                                                  "(default AIVO_HOME/federation/certificates)."),
    insecure: bool = InsecureOption,
    no_auth: bool = typer.Option(False, "--no-auth", help="Let any SuperNode connect (tests only)."),
) -> None:
    """Run the coordinator's Flower SuperLink (TLS, SuperNode authentication); it starts the
    ServerApp of each run with this coordinator's settings."""
    from aivo.services.federation import flower_bin, flower_env  # start-up

    cfg = settings()
    argv = [flower_bin("flower-superlink"), "--host", host, "--port", str(port),
            "--database", str((cfg.ensure_home() / "federation" / "superlink.db").resolve()),
            "--disable-runtime-dependency-installation"]
    (cfg.home / "federation").mkdir(parents=True, exist_ok=True)
    if insecure:
        if not no_auth:
            raise ConfigError("SuperNode authentication needs TLS: use certificates, or --insecure --no-auth for "
                              "local tests")
        argv.append("--insecure")
    else:
        folder = certificates or cfg.home / "federation" / "certificates"
        files = [folder / "ca.crt", folder / "server.pem", folder / "server.key"]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise ConfigError(f"missing TLS files {', '.join(missing)}: make them with `aivo federation certificates "
                              "--host HOST` or bring your own")
        argv += ["--ssl-ca-certfile", str(files[0].resolve()), "--ssl-certfile", str(files[1].resolve()),
                 "--ssl-keyfile", str(files[2].resolve())]
        if not no_auth:
            argv.append("--enable-supernode-auth")
    env = flower_env(cfg)
    env["AIVO_HOME"] = str(cfg.home.resolve())
    _exec(argv, env)


@federation_app.command("run")
@with_round_options
def run_cmd(round_options: dict, superlink: str | None = SuperlinkOption,
            root_certificates: Path | None = RootCertOption, insecure: bool = InsecureOption,
            actor: str | None = typer.Option(None, "--actor"), as_json: bool = JsonOption) -> None:
    """Run federated rounds on the SuperLink (deployment runtime) and report them."""
    from aivo.services.federation import default_actor, run_federation_deployment  # start-up

    options = _options(round_options)
    report = run_federation_deployment(registry=_registry(), settings=settings(), options=options,
                                       actor=actor or default_actor(), superlink=superlink,
                                       root_certificates=root_certificates, insecure=insecure,
                                       stream=None if as_json else (lambda line: err_console.print(
                                           line, highlight=False, markup=False)))
    emit(to_jsonable(report.to_dict()), as_json=as_json, render=_render_report)


@federation_app.command("simulate")
@with_round_options
def simulate_cmd(round_options: dict,
                 sites: int = typer.Option(3, "--sites", min=1, help="Simulated sites (SuperNodes)."),
                 sites_dir: Path | None = typer.Option(None, "--sites-dir", file_okay=False,
                                                       help="Folder of site homes (default AIVO_HOME/sites); "
                                                            "missing sites are made from the simulator."),
                 learners_per_site: int = typer.Option(50, "--learners-per-site", min=1),
                 interactions: int = typer.Option(60, "--interactions", min=10, help="Per simulated learner."),
                 split: str = typer.Option("random", "--split", help="random | skills (heterogeneous sites)."),
                 actor: str | None = typer.Option(None, "--actor"), as_json: bool = JsonOption) -> None:
    """N sites on this machine through Flower's simulation runtime, each with its own registry folder."""
    from aivo.services.federation import default_actor, simulate_federation  # start-up
    from aivo.services.federation_setup import existing_site_homes, simulated_cohort_sites  # start-up

    options = _options(round_options)
    cfg = settings()
    registry = _registry()
    folder = sites_dir or cfg.ensure_home() / "sites"
    homes = existing_site_homes(folder)
    if not homes:
        simulated_cohort_sites(coordinator=registry, sites_dir=folder, num_sites=sites,
                               learners_per_site=learners_per_site, interactions_per_learner=interactions,
                               seed=cfg.seed if options.seed is None else options.seed, split=split)
        homes = existing_site_homes(folder)
    elif len(homes) != sites:
        raise ConfigError(f"{folder} holds {len(homes)} site homes, not {sites}: use --sites {len(homes)} or "
                          "another --sites-dir")
    report = simulate_federation(registry=registry, settings=cfg, site_homes=homes, options=options,
                                 actor=actor or default_actor())
    emit(to_jsonable(report.to_dict()), as_json=as_json, render=_render_report)


@federation_app.command("status")
def status_cmd(limit: int = typer.Option(10, "--limit", min=1), as_json: bool = JsonOption) -> None:
    """Enrolled sites, recent rounds, the active version and the federation's epsilon."""
    from aivo.services.federation import federation_status  # start-up

    status = federation_status(registry=_registry(), limit=limit)

    def render(r: dict) -> None:
        eps = "-" if r["epsilon_federation"] is None else f"{r['epsilon_federation']:.3g}"
        console.print(f"active version {r['version']}; {len(r['sites'])} site(s); user-level epsilon over the "
                      f"federation's DP rounds {eps}; interactions held here: {r['interactions']}")
        sites = Table(title="sites", title_justify="left")
        for col in ("site", "status", "key", "enrolled"):
            sites.add_column(col)
        for s in r["sites"]:
            sites.add_row(s["name"], s["status"], s["fingerprint"][:16], s["enrolled_at"][:19])
        console.print(sites)
        rounds = Table(title="rounds", title_justify="left")
        for col in ("id", "status", "version", "sites", "learners", "AUC before", "AUC after", "epsilon", "message"):
            rounds.add_column(col, overflow="fold")
        for x in r["rounds"]:
            c = x["counts"] or {}
            rounds.add_row(str(x["federated_update_id"]), x["status"],
                           f"{x['version_before']} -> {x['version_after'] or '-'}",
                           f"{c.get('contributing', 0)}/{c.get('connected', 0)}", str(c.get("learners_accepted", "-")),
                           "-" if x["auc_before"] is None else f"{x['auc_before']:.4f}",
                           "-" if x["auc_after"] is None else f"{x['auc_after']:.4f}",
                           "-" if x["epsilon_round"] is None else f"{x['epsilon_round']:.3g}", x["message"] or "")
        console.print(rounds)

    emit(to_jsonable(status.to_dict()), as_json=as_json, render=render)
