"""The coordinator of a federation across sites: its use cases.

* `CoordinatorService`: the `CoordinatorHooks` of `aivo.sites.coordinator` over the coordinator's
  registry (active version, enrolled sites, round records, promotion, audit, round-level
  epsilon). The coordinator's registry holds versions, rounds and audit, and no interactions.
* `simulate_federation`: N sites on this machine through Flower's simulation runtime, each site
  its own registry folder (`aivo federation simulate`).
* `run_federation_deployment`: a run on a real SuperLink (`aivo federation run`), through the
  ordinary `flwr run` client.
* `enroll_site`, `revoke_site`, `federation_status`: enrollment and reports.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from flwr.app import Message
from flwr.common import bytes_to_ndarray

from aivo.brain.checkpoint import load_checkpoint, to_state
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings, get_settings
from aivo.errors import ConfigError, ConflictError
from aivo.federated.round import round_settings
from aivo.privacy.accountants import epsilon_for
from aivo.registry import (
    Registry,
    default_actor,
    get_active_main_version,
    list_federated_updates,
    next_main_version_name,
    open_registry,
    promote_main_version,
    record_federated_update,
    register_main_version,
    write_audit,
)
from aivo.registry.tables import FederatedUpdate, Interaction
from aivo.registry.sites import SiteRecord, enroll_site as _enroll, enrolled_keys, list_sites, revoke_site as _revoke
from aivo.brain.versions import architecture_of, load_main_brain, register_brain
from aivo.services.site_identity import site_client_app
from aivo.sites.coordinator import ActiveVersion, FederationOptions, RoundOutcome, run_federation
from aivo.sites.identity import fingerprint, make_certificates, parse_public_key
from aivo.sites.server_app import OPTIONS_KEY, decode_options, encode_options, make_server_app

log = logging.getLogger(__name__)
__all__ = ["default_actor", "make_certificates"]  # re-exported for the CLI (interfaces reach the rest through services)
MODE = "sites"  # federated_updates.details["mode"] of rounds across sites


def options_from_settings(settings: Settings, **overrides: Any) -> FederationOptions:
    """FederationOptions from AIVO_* settings (the embedded aggregation's knobs); keyword
    overrides (None = keep) win."""
    values: dict[str, Any] = dict(
        round_settings(settings), local_epochs=settings.local_epochs, local_learning_rate=settings.local_learning_rate,
        proximal_mu=settings.fedprox_mu)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return FederationOptions(**values)


class CoordinatorService:
    """CoordinatorHooks over the coordinator's registry."""

    def __init__(self, *, registry: Registry, actor: str, clock: Clock = SYSTEM_CLOCK):
        self.registry, self.actor, self.clock = registry, actor, clock

    def active_version(self) -> ActiveVersion:
        loaded = load_main_brain(registry=self.registry)
        sha = loaded.version.artifact_sha256
        return ActiveVersion(loaded.version.version, sha, loaded.brain, lambda: self.registry.store.get_bytes(sha))

    def enrolled_sites(self) -> dict[str, str]:
        with self.registry.session(read_only=True) as session:
            return enrolled_keys(session=session)

    def rounds_done(self) -> int:
        with self.registry.session(read_only=True) as session:
            return int(session.scalar(sa.select(sa.func.count()).select_from(FederatedUpdate)) or 0)

    def _dp_history(self) -> list[tuple[float, float, int]]:
        """(sigma, q, 1) of every earlier DP round across sites that reached the sites' training."""
        history = []
        with self.registry.session(read_only=True) as session:
            for privacy, details in session.execute(sa.select(FederatedUpdate.privacy, FederatedUpdate.details)
                                                    .order_by(FederatedUpdate.id)):
                if (details or {}).get("mode") == MODE and (privacy or {}).get("epsilon_round") is not None:
                    history.append((float(privacy["noise_multiplier"]), float(privacy["sample_rate"]), 1))
        return history

    def commit_round(self, outcome: RoundOutcome, options: FederationOptions) -> RoundOutcome:
        trained = outcome.counts.get("contributing", 0) > 0 or outcome.counts.get("rejected", 0) > 0
        privacy = {"enabled": options.dp_enabled, "noise_multiplier": options.noise_multiplier,
                   "sample_rate": options.sample_rate, "clip_norm": options.clip_norm, "delta": options.delta,
                   "accountant": options.accountant, "secure_aggregation": options.secure_aggregation,
                   **outcome.privacy}
        if options.dp_enabled and trained and options.noise_multiplier > 0:
            one = epsilon_for(history=[(options.noise_multiplier, options.sample_rate, 1)], delta=options.delta,
                              accountant=options.accountant)
            total = epsilon_for(history=self._dp_history() + [(options.noise_multiplier, options.sample_rate, 1)],
                                delta=options.delta, accountant=options.accountant)
            privacy.update(epsilon_round=one, epsilon_federation=total)
        outcome.privacy = privacy
        artifact = None
        if outcome.candidate is not None:
            tensors, metadata = to_state(outcome.candidate)
            artifact = self.registry.store.put_tensors(tensors, metadata=metadata)
        details = {"mode": MODE, "round": outcome.number, "message": outcome.message, "counts": outcome.counts,
                   "sites": [s.to_dict() for s in outcome.sites], "aggregation": outcome.aggregation,
                   "seconds": {k: round(v, 3) for k, v in outcome.seconds.items()}, "gate_margin": options.gate_margin,
                   "options": {k: v for k, v in options.to_dict().items() if k != "seed"}}
        with self.registry.session() as session:
            active = get_active_main_version(session=session)
            if active is None or active.version != outcome.version_before:
                raise ConflictError(f"the active main version changed during the round (was {outcome.version_before})")
            version_after = None
            if artifact is not None:
                version_after = next_main_version_name(session=session)
                register_main_version(session=session, store=self.registry.store, version=version_after,
                                      artifact=artifact, architecture=architecture_of(outcome.candidate),
                                      training_metrics={"gate": outcome.metrics_after, "federated": True},
                                      data_hash=None, parent_version=outcome.version_before, created_by=self.actor,
                                      details={"federated": outcome.aggregation, "mode": MODE}, clock=self.clock)
                promote_main_version(session=session, version=version_after, actor=self.actor,
                                     reason=f"federated round across sites: {outcome.message}", clock=self.clock)
            record = record_federated_update(
                session=session, version_before=outcome.version_before, version_after=version_after,
                strategy=options.strategy, status=outcome.status, num_contributors=outcome.counts.get(
                    "learners_accepted", 0), metrics_before=outcome.metrics_before,
                metrics_after=outcome.metrics_after, improvement=outcome.improvement,
                privacy={k: v for k, v in privacy.items() if v is not None}, details=details, clock=self.clock)
            write_audit(session=session, actor=self.actor, action="federation.round",
                        target=version_after or outcome.version_before, reason=outcome.message,
                        details={"federated_update_id": record.id, "round": outcome.number,
                                 "status": outcome.status, "counts": outcome.counts}, clock=self.clock)
        outcome.version_after, outcome.federated_update_id = version_after, record.id
        outcome.candidate = None
        return outcome


def message_logger(folder: Path | None) -> Callable[[Message], None] | None:
    """AIVO_FEDERATION_MESSAGE_LOG: every message the coordinator receives, as one .npz per
    message (arrays) plus its configs and metrics, for audits."""
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    counter = iter(range(10**9))

    def sink(message: Message) -> None:
        index = next(counter)
        meta: dict[str, Any] = {"src_node_id": int(message.metadata.src_node_id),
                                "message_type": message.metadata.message_type, "error": None}
        arrays: dict[str, Any] = {}
        if message.has_error():
            meta["error"] = str(message.error.reason)
        else:
            content = message.content
            meta["array_records"] = {}
            for name, record in content.array_records.items():
                keys = list(record.keys())
                meta["array_records"][name] = keys
                for key, array in zip(keys, record.to_numpy_ndarrays()):
                    arrays[f"{name}/{key}"] = array
            meta["config_records"] = {}
            for name, record in content.config_records.items():
                values = {}
                for key, value in dict(record).items():
                    items = value if isinstance(value, list) else [value]
                    if items and all(isinstance(v, bytes) for v in items):
                        # SecAgg+ sends vectors and keys as bytes: keep the decodable arrays
                        for i, item in enumerate(items):
                            try:
                                arrays[f"config:{name}/{key}/{i}"] = bytes_to_ndarray(item)
                            except Exception:  # noqa: BLE001 - keys and ciphertexts are not arrays
                                pass
                        values[key] = f"<{len(items)} bytes value(s)>"
                    else:
                        values[key] = value
                meta["config_records"][name] = values
            meta["metric_records"] = {name: dict(record) for name, record in content.metric_records.items()}
        stem = folder / f"{os.getpid()}-{index:06d}"
        np.savez(stem.with_suffix(".npz"), **arrays)
        stem.with_suffix(".json").write_text(json.dumps(meta, default=str))

    return sink


def coordinator_main(*, registry: Registry, options: FederationOptions, actor: str, settings: Settings,
                     on_round: Callable[[RoundOutcome], None] | None = None, results: list | None = None,
                     expected_nodes: int | None = None):
    """The ServerApp's main for this coordinator (both runtimes; `expected_nodes`: the simulation's
    node count, see `run_federation`)."""
    def run(grid, context) -> None:
        hooks = CoordinatorService(registry=registry, actor=actor)
        outcomes = run_federation(grid=grid, hooks=hooks, options=options,
                                  sink=message_logger(settings.federation_message_log), on_round=on_round,
                                  expected_nodes=expected_nodes)
        if results is not None:
            results.extend(outcomes)

    return run


def deployed_server_app():
    """The ServerApp that `flwr run` starts on the coordinator (aivo/flower_app): its settings
    come from the SuperLink's environment, the run's options from the run config."""
    def run(grid, context) -> None:
        settings = get_settings()
        options = decode_options(str(context.run_config.get(OPTIONS_KEY, "")))
        actor = str(context.run_config.get("aivo-actor", "federation"))
        coordinator_main(registry=open_registry(settings), options=options, actor=actor, settings=settings)(
            grid, context)

    return make_server_app(run)


# --- simulation runtime ----------------------------------------------------------------------------
@dataclass
class FederationReport:
    rounds: list[dict] = field(default_factory=list)
    version_before: str | None = None
    version_after: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    runtime: str = "simulation"
    sites: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "version_before": self.version_before, "version_after": self.version_after,
                "sites": self.sites, "rounds": self.rounds, "warnings": self.warnings,
                "seconds": round(self.seconds, 3)}


def simulate_federation(*, registry: Registry, settings: Settings, site_homes: Sequence[Path],
                        options: FederationOptions, actor: str, num_cpus: int | None = None,
                        on_round: Callable[[RoundOutcome], None] | None = None) -> FederationReport:
    """`options.rounds` rounds with every site home as one simulated SuperNode (Flower's
    simulation runtime, Ray backend). Each site keeps its own registry folder; the coordinator is
    this process's registry. Sites must be initialized (`aivo site init`) and enrolled."""
    from flwr.simulation import run_simulation  # start-up: loads the Ray backend only when simulating


    homes = [Path(h).resolve() for h in site_homes]
    if not homes:
        raise ConfigError("a simulation needs at least one site")
    missing = [str(h) for h in homes if not (h / "site" / "site.env").exists()]
    if missing:
        raise ConfigError(f"not a site home (run `aivo site init` there first): {', '.join(missing[:3])}")
    _check_coordinator(registry)
    report = FederationReport(warnings=options.warnings(), sites=[h.name for h in homes])
    with registry.session(read_only=True) as session:
        active = get_active_main_version(session=session)
    report.version_before = active.version if active else None
    results: list[RoundOutcome] = []
    started = time.perf_counter()
    # Flower registers the simulated nodes while the ServerApp already runs: the rounds wait for all of them.
    server_app = make_server_app(coordinator_main(registry=registry, options=options, actor=actor, settings=settings,
                                                  on_round=on_round, results=results, expected_nodes=len(homes)))
    cpus = num_cpus or max(1, min(len(homes), os.cpu_count() or 1))
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    run_simulation(server_app=server_app, client_app=site_client_app([str(h) for h in homes]),
                   num_supernodes=len(homes),
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": cpus, "num_gpus": 0, "include_dashboard": False,
                                                 "logging_level": 30, "log_to_driver": False}})
    report.seconds = time.perf_counter() - started
    report.rounds = [r.to_dict() for r in results]
    if len(results) < options.rounds and not any(r.status == "failed" for r in results):
        raise ConfigError("the simulation ended before its rounds were done (see the log above)")
    with registry.session(read_only=True) as session:
        active = get_active_main_version(session=session)
    report.version_after = active.version if active else None
    return report


def _check_coordinator(registry: Registry) -> None:
    """The coordinator's registry holds no learner interactions (federated mode)."""
    with registry.session(read_only=True) as session:
        rows = session.scalar(sa.select(sa.func.count()).select_from(Interaction)) or 0
    if rows:
        raise ConflictError(f"this registry holds {rows} interactions: a coordinator holds none (federated mode keeps "
                          "learner data at the sites); use a separate AIVO_HOME for the coordinator")


# --- deployment runtime ----------------------------------------------------------------------------
APP_DIR = Path(__file__).resolve().parent.parent / "flower_app"


def flwr_home(settings: Settings) -> Path:
    return settings.ensure_home() / "flower"


def write_flower_config(settings: Settings, *, superlink: str, root_certificates: Path | None,
                        insecure: bool = False) -> Path:
    """The `flwr` CLI's configuration (FLWR_HOME under AIVO_HOME) with one connection, `aivo`."""
    home = flwr_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]", 'default = "aivo"', "", "[superlink.aivo]", f'address = "{superlink}"']
    if insecure:
        lines.append("insecure = true")
    elif root_certificates is not None:
        lines.append(f'root-certificates = "{Path(root_certificates).resolve()}"')
    # Atomically (a temporary file renamed over it): a `flwr` process started meanwhile, for
    # another site's registration say, reads the old file or the new one, never a torn one.
    with tempfile.NamedTemporaryFile("w", dir=home, prefix=".config.", suffix=".toml", delete=False) as tmp:
        tmp.write("\n".join(lines) + "\n")
    os.replace(tmp.name, home / "config.toml")
    return home


def flower_env(settings: Settings) -> dict[str, str]:
    """The environment of Flower's processes: its own home under AIVO_HOME, no update check, and
    this Python's bin folder first on PATH (Flower starts `flower-superexec`, `flwr-serverapp`
    and `flwr-clientapp` by name; a virtual environment need not be activated)."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env.update(FLWR_HOME=str(flwr_home(settings)), FLWR_DISABLE_UPDATE_CHECK="1",
               PATH=os.pathsep.join([bin_dir, env.get("PATH", "")]))
    return env


def flower_bin(name: str) -> str:
    """A Flower executable next to this Python (the venv's bin), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} is not installed (it comes with the flwr package)")
    return found


def run_federation_deployment(*, registry: Registry, settings: Settings, options: FederationOptions, actor: str,
                              superlink: str | None = None, root_certificates: Path | None = None,
                              insecure: bool = False, stream: Callable[[str], None] | None = None,
                              timeout: float | None = None) -> FederationReport:
    """Submit a run to the SuperLink with `flwr run` and wait for it; the rounds are recorded in
    this (the coordinator's) registry by the ServerApp that the SuperLink starts, which must see
    the same registry (same AIVO_HOME / AIVO_DATABASE_URL)."""
    _check_coordinator(registry)
    address = superlink or settings.superlink
    certs = root_certificates or settings.federation_root_certificates
    if not insecure and certs is None:
        raise ConfigError("the SuperLink's CA certificate is needed (--root-certificates or "
                          "AIVO_FEDERATION_ROOT_CERTIFICATES); --insecure only for local tests")
    write_flower_config(settings, superlink=address, root_certificates=certs, insecure=insecure)
    before = _latest_round(registry)
    with registry.session(read_only=True) as session:
        active = get_active_main_version(session=session)
    report = FederationReport(warnings=options.warnings(), runtime="deployment",
                              version_before=active.version if active else None)
    started = time.perf_counter()
    command = [flower_bin("flwr"), "run", str(APP_DIR), "aivo", "--stream", "--run-config",
               f'{OPTIONS_KEY}="{encode_options(options)}" aivo-actor="{actor}"']
    process = subprocess.Popen(command, env=flower_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    lines: list[str] = []
    assert process.stdout is not None
    deadline = None if timeout is None else time.monotonic() + timeout
    for line in process.stdout:
        lines.append(line.rstrip())
        if stream is not None:
            stream(line.rstrip())
        if deadline is not None and time.monotonic() > deadline:
            process.kill()
            break
    code = process.wait()
    report.seconds = time.perf_counter() - started
    with registry.session(read_only=True) as session:
        rows = [r for r in reversed(list_federated_updates(session=session, limit=1000))
                if r.id > before and r.details.get("mode") == MODE]
        active = get_active_main_version(session=session)
    report.version_after = active.version if active else None
    report.rounds = [{"federated_update_id": r.id, "status": r.status, "message": r.details.get("message"),
                      "version_before": r.version_before, "version_after": r.version_after,
                      "counts": r.details.get("counts"), "sites": r.details.get("sites"),
                      "metrics_before": r.metrics_before, "metrics_after": r.metrics_after,
                      "privacy": r.privacy, "seconds": r.details.get("seconds")} for r in rows]
    if code != 0 or not rows:
        tail = "\n".join(lines[-15:])
        raise ConfigError(f"the federated run did not complete (flwr run exited {code}, {len(rows)} round(s) "
                          f"recorded):\n{tail}")
    return report


def submit_federation_run(*, registry: Registry, settings: Settings, options: FederationOptions, actor: str,
                          superlink: str | None = None, root_certificates: Path | None = None,
                          insecure: bool = False) -> str:
    """Start a run on the SuperLink without waiting (`flwr run`, JSON output); returns its run id."""
    _check_coordinator(registry)
    certs = root_certificates or settings.federation_root_certificates
    if not insecure and certs is None:
        raise ConfigError("the SuperLink's CA certificate is needed (AIVO_FEDERATION_ROOT_CERTIFICATES)")
    write_flower_config(settings, superlink=superlink or settings.superlink, root_certificates=certs,
                        insecure=insecure)
    done = subprocess.run([flower_bin("flwr"), "run", str(APP_DIR), "aivo", "--format", "json", "--run-config",
                           f'{OPTIONS_KEY}="{encode_options(options)}" aivo-actor="{actor}"'],
                          env=flower_env(settings), capture_output=True, text=True, timeout=300)
    try:
        result = json.loads(done.stdout)
    except ValueError:
        result = {}
    if done.returncode != 0 or not result.get("run-id"):
        raise ConfigError(f"the SuperLink did not start the run: {(done.stdout + done.stderr).strip()[-500:]}")
    return str(result["run-id"])


def _latest_round(registry: Registry) -> int:
    with registry.session(read_only=True) as session:
        return int(session.scalar(sa.select(sa.func.max(FederatedUpdate.id))) or 0)


def register_checkpoint(*, registry: Registry, path: Path, actor: str) -> str:
    """Register a Main Brain checkpoint (`aivo train-main --out DIR`) at the coordinator and
    promote it: the federation's starting version. Returns the version name."""
    _check_coordinator(registry)
    brain = load_checkpoint(path)
    record = register_brain(registry=registry, brain=brain, training_metrics=dict(brain.info.get("metrics") or {}),
                            data_hash=brain.info.get("data_hash"), promote=True, actor=actor,
                            reason=f"federation's starting version, from the checkpoint {path}")
    return record.version


# --- enrollment and status -----------------------------------------------------------------------------
def enroll_site(*, registry: Registry, name: str, public_key: str, actor: str,
                clock: Clock = SYSTEM_CLOCK) -> SiteRecord:
    parse_public_key(public_key)  # DataError if it is not one
    with registry.session() as session:
        record = _enroll(session=session, name=name, public_key=public_key, fingerprint=fingerprint(public_key),
                         actor=actor, clock=clock)
        write_audit(session=session, actor=actor, action="federation.enroll", target=name,
                    details={"fingerprint": record.fingerprint}, clock=clock)
    return record


def revoke_site(*, registry: Registry, name: str, actor: str, clock: Clock = SYSTEM_CLOCK) -> SiteRecord:
    with registry.session() as session:
        record = _revoke(session=session, name=name, clock=clock)
        write_audit(session=session, actor=actor, action="federation.revoke", target=name, clock=clock)
    return record


def register_with_superlink(*, settings: Settings, public_key_path: Path, superlink: str | None = None,
                            root_certificates: Path | None = None, insecure: bool = False) -> str:
    """`flwr supernode register`: let the SuperLink (started with --enable-supernode-auth)
    accept this site's SuperNode. Returns flwr's output."""
    write_flower_config(settings, superlink=superlink or settings.superlink,
                        root_certificates=root_certificates or settings.federation_root_certificates,
                        insecure=insecure)
    done = subprocess.run([flower_bin("flwr"), "supernode", "register", str(public_key_path), "aivo"],
                          env=flower_env(settings), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise ConfigError(f"flwr supernode register failed: {(done.stdout + done.stderr).strip()[-500:]}")
    return done.stdout.strip()


@dataclass
class FederationStatus:
    version: str | None
    sites: list[dict]
    rounds: list[dict]
    epsilon_federation: float | None
    interactions: int

    def to_dict(self) -> dict:
        return {"version": self.version, "sites": self.sites, "rounds": self.rounds,
                "epsilon_federation": self.epsilon_federation, "interactions": self.interactions}


def federation_status(*, registry: Registry, limit: int = 20) -> FederationStatus:
    with registry.session(read_only=True) as session:
        active = get_active_main_version(session=session)
        sites = [s.to_dict() for s in list_sites(session=session)]
        rows = [r for r in list_federated_updates(session=session, limit=max(limit * 4, 100))
                if r.details.get("mode") == MODE][:limit]
        interactions = session.scalar(sa.select(sa.func.count()).select_from(Interaction)) or 0
    for site in sites:
        site.pop("public_key", None)
    rounds = [{"federated_update_id": r.id, "round": r.details.get("round"), "status": r.status,
               "message": r.details.get("message"), "version_before": r.version_before,
               "version_after": r.version_after, "counts": r.details.get("counts"),
               "sites": r.details.get("sites"), "auc_before": r.metrics_before.get("auc"),
               "auc_after": r.metrics_after.get("auc"), "epsilon_round": r.privacy.get("epsilon_round"),
               "epsilon_federation": r.privacy.get("epsilon_federation"),
               "created_at": r.created_at.isoformat()} for r in rows]
    eps = next((r["epsilon_federation"] for r in rounds if r["epsilon_federation"] is not None), None)
    return FederationStatus(active.version if active else None, sites, rounds, eps, int(interactions))
