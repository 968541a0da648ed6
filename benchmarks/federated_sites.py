"""Federation across sites on Flower: accuracy against the in-process federation, round time, scale.

Every arm runs the same site code (`SiteService.contribute` / `.evaluate`, behind the site's
ClientApp) and the same coordinator code (`aivo.sites.coordinator.run_federation`: sites, version,
train, server step, federated evaluation, gate, commit into the coordinator's registry):

* **in-process**: `DirectGrid` hands each message straight to the site's ClientApp in this
  process, one site after another (no Flower runtime, no network, no secure aggregation);
* **simulation**: `simulate_federation` (Flower's simulation runtime, Ray), with SecAgg+ and without;
* **deployment**: a real `flower-superlink` and one `flower-supernode` per site on loopback, as
  deployed: TLS with a private CA, SuperNode authentication, and (`--isolation process`, the
  default of `aivo site serve`) one long-lived site worker per SuperNode; `run_federation_deployment`.

Parts (each runs alone and writes benchmarks/out/federated_sites/<part>.json; `--write-results`
renders every saved part into RESULTS.md):

* `assist2015`: ASSIST2015's client learners (federated_assist2015's split: 80% of the training
  learners) over `--sites` sites, split at random or by the skill each learner practised most; the
  coordinator starts from the Main Brain pre-trained on the curriculum learners. The in-process
  federation and Flower (simulation runtime, SecAgg+) run the same rounds with the same settings
  and seed; the test AUC of each final Main Brain on test.csv is compared (target: within 0.002),
  with DP off and at a target epsilon (sigma calibrated for `--rounds` steps at rate `--q`).
* `overhead`: round time through Flower against the in-process round (target: at most 1.5x).
* `scale`: Flower's simulation runtime from 10 to 100 sites: time per round and peak memory.

A round's time is the coordinator's (sites, train, aggregate, evaluate), for the second round of a
run (the first also loads the sites' Python in Flower's workers); peak memory is the highest
resident memory of this process plus every process it started (sampled every 0.2 s). Every part
records the 1-minute load average before and after: the machine is shared.

    python benchmarks/federated_sites.py assist2015 --splits random --dp off,8 --write-results
    python benchmarks/federated_sites.py assist2015 --splits skills --dp off,8 --write-results
    python benchmarks/federated_sites.py overhead --sites 10 --learners-per-site 1000 --write-results
    python benchmarks/federated_sites.py overhead --sites 10 --learners-per-site 1000 --runtimes deployment \
        --q 0.1 --local-epochs 1 --site-gate-learners 200 [--isolation subprocess] [--logs DIR]
    python benchmarks/federated_sites.py scale --sites-list 10,100 --learners-per-site 100 --write-results
    python benchmarks/federated_sites.py report --write-results
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from bench import load_average, machine, write_section  # noqa: E402

START, END = "<!-- federated-sites:start -->", "<!-- federated-sites:end -->"


class PeakMemory:
    """Highest summed RSS of this process and its descendants."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return self.peak / 2**20


def build(root: Path, sites: int, learners: int, interactions: int):
    from aivo.brain.config import BrainConfig
    from aivo.config import Settings
    from aivo.registry import open_registry
    from aivo.services.federation_setup import simulated_cohort_sites

    settings = Settings(home=root / "coordinator", database_url=None, artifact_url=None, num_threads=1, seed=0)
    registry = open_registry(settings)
    started = time.perf_counter()
    fed = simulated_cohort_sites(coordinator=registry, sites_dir=root / "sites", num_sites=sites,
                                 learners_per_site=learners, interactions_per_learner=interactions, seed=0,
                                 brain_config=BrainConfig(max_epochs=1))
    return settings, registry, [s.home for s in fed.sites], time.perf_counter() - started


def options(settings, rounds, secure, **overrides):
    from aivo.services.federation import options_from_settings

    values = dict(rounds=rounds, min_sites=2, secure_aggregation=secure, dp_enabled=True, sample_rate=1.0,
                  noise_multiplier=1.0, round_timeout=3600, gate_margin=1.0,
                  epsilon_budget=1e9)  # timing, not privacy: every learner takes part in every round
    values.update(overrides)
    return options_from_settings(settings, **values)


class DirectGrid:
    """The in-process reference: a Grid whose messages go straight to each site's ClientApp in
    this process, one site after another (no Flower runtime, no network, no secure aggregation).
    The coordinator's code (`run_federation`: sites, version, train, server step, evaluation,
    gate, commit) and the sites' code are the ones Flower runs."""

    def __init__(self, homes):
        from flwr.supercore.task_identity import TaskIdentity

        from aivo.services.site_identity import site_client_app

        # What a Flower runtime sets for the ServerApp's process (messages take their ids from it).
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
        self._app = site_client_app([str(h) for h in homes])
        self._partition = {1001 + i: i for i in range(len(homes))}
        self._replies = {}

    def get_node_ids(self):
        return list(self._partition)

    def push_messages(self, messages):
        """Runs each message's site now, one after another; the replies wait for `pull_messages`."""
        from flwr.app import Context, RecordDict

        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = message.object_id  # what a Flower grid sets on push
            node = int(message.metadata.dst_node_id)
            context = Context(run_id=1, node_id=node, node_config={"partition-id": self._partition[node]},
                              state=RecordDict(), run_config={})
            self._replies[message.metadata.message_id] = self._app(message, context)
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids):
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]


def direct_rounds(settings, registry, homes, opts) -> list[dict]:
    """`opts.rounds` rounds of the coordinator's code over a DirectGrid (see there)."""
    from aivo.services.federation import CoordinatorService
    from aivo.sites.coordinator import run_federation

    outcomes = run_federation(grid=DirectGrid(homes), hooks=CoordinatorService(registry=registry, actor="bench"),
                              options=opts)
    return [summary(o.to_dict()) for o in outcomes]


def summary(r: dict) -> dict:
    return {"round_seconds": round(sum((r.get("seconds") or {}).values()), 2),
            "seconds": {k: round(v, 2) for k, v in (r.get("seconds") or {}).items()}, "status": r["status"],
            "message": r.get("message"), "sites": (r.get("counts") or {}).get("contributing"),
            "learners_accepted": (r.get("counts") or {}).get("learners_accepted"),
            "auc_before": (r.get("metrics_before") or {}).get("auc"),
            "auc_after": (r.get("metrics_after") or {}).get("auc"),
            "epsilon_federation": (r.get("privacy") or {}).get("epsilon_federation")}


def flower_rounds(kind, settings, registry, homes, opts, isolation="process") -> list[dict]:
    from aivo.services.federation import run_federation_deployment, simulate_federation

    if kind == "simulation":
        report = simulate_federation(registry=registry, settings=settings, site_homes=homes, options=opts,
                                     actor="bench")
        return [summary(r) for r in report.rounds]
    if kind != "deployment":
        raise SystemExit(f"unknown runtime {kind!r}: simulation or deployment")
    import signal
    import socket

    from aivo.services.federation import make_certificates, register_with_superlink

    with socket.socket() as sock:  # a free port for the SuperLink (its SuperNodes' ports follow it)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    superlink = f"127.0.0.1:{port}"
    # As deployed (and in tests/sites/test_deployment.py): TLS with a private CA, SuperNode authentication.
    certs = make_certificates(Path(tempfile.mkdtemp(prefix="aivo_fed_certs_")), hosts=["127.0.0.1"])
    env = {**os.environ, "AIVO_HOME": str(settings.home), "FLWR_DISABLE_UPDATE_CHECK": "1", "AIVO_NUM_THREADS": "1"}
    (Path(settings.home) / "federation" / "superlink.db").unlink(missing_ok=True)  # a fresh SuperLink per arm
    logs = Path(LOGS) / ("secagg" if opts.secure_aggregation else "plain") if LOGS else None

    def output(name):
        if logs is None:
            return subprocess.DEVNULL
        logs.mkdir(parents=True, exist_ok=True)
        return (logs / f"{name}.log").open("w")

    procs = [subprocess.Popen([sys.executable, "-m", "aivo", "federation", "serve", "--host", "127.0.0.1", "--port",
                               str(port), "--certificates", str(certs.ca_certificate.parent)], env=env,
                              stdout=output("superlink"), stderr=subprocess.STDOUT, start_new_session=True)]
    try:
        deadline = time.monotonic() + 180  # the SuperLink imports Flower first: slow on a busy machine
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        else:
            raise SystemExit(f"the SuperLink did not listen on {port} within 180 s")
        for i, home in enumerate(homes):
            register_with_superlink(settings=settings, public_key_path=Path(home) / "site" / "site.pub",
                                    superlink=superlink, root_certificates=certs.ca_certificate)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "aivo", "site", "serve", "--superlink", superlink, "--root-certificates",
                 str(certs.ca_certificate), "--port", str(port + 10 + i), "--isolation", isolation],
                env={**env, "AIVO_HOME": str(home)}, stdout=output(Path(home).name), stderr=subprocess.STDOUT,
                start_new_session=True))
        report = run_federation_deployment(registry=registry, settings=settings, options=opts, actor="bench",
                                           superlink=superlink, root_certificates=certs.ca_certificate)
        return [summary(r) for r in report.rounds]
    finally:
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(certs.ca_certificate.parent, ignore_errors=True)


PART_DEFAULTS = {"assist2015": {"q": 0.1, "local_epochs": 1, "site_gate_learners": 200},
                 "overhead": {"q": 1.0}, "scale": {"q": 1.0}}


def workload(args) -> dict:
    """What each round does (recorded with the timings)."""
    from aivo.config import Settings

    defaults = Settings(home=Path(tempfile.gettempdir()), database_url=None, artifact_url=None)
    return {"q": args.q, "local_epochs": args.local_epochs or defaults.local_epochs,
            "site_gate_learners": args.site_gate_learners or defaults.gate_max_learners,
            "interactions_per_learner": args.interactions}


def result_name(args) -> str:
    if args.what != "overhead":
        return args.what
    return (f"overhead-{args.sites}x{args.learners_per_site}-" + args.runtimes.replace(",", "+")
            + ("" if args.isolation == "process" or "deployment" not in args.runtimes else "-subprocess"))


def partial(args, out: dict) -> None:
    path = HERE / "out" / "federated_sites" / f"{result_name(args)}.json"
    path.write_text(json.dumps({**out, "command": command(), "run": f"{START_TIME}; not finished"}, indent=1))


START_TIME = ""
LOGS = ""  # --logs: where the deployment arm's processes write their output (default: nowhere)


def command() -> str:
    return "python benchmarks/federated_sites.py " + " ".join(sys.argv[1:])


def loads() -> float:
    return round(load_average(), 1)


def overhead(args) -> dict:
    root = Path(tempfile.mkdtemp(prefix="aivo_fed_sites_"))
    try:
        settings, registry, homes, build_s = build(root, args.sites, args.learners_per_site, args.interactions)
        out = {"sites": args.sites, "learners_per_site": args.learners_per_site, "build_seconds": round(build_s, 1),
               "isolation": args.isolation, **workload(args)}
        secure = {"off": (False,), "on": (True,), "both": (False, True)}[args.secagg]
        arms = [("in_process", "direct", False)] + [
            (f"{k}{'_secagg' if s else ''}", k, s) for k in args.runtimes.split(",") if k for s in secure]
        for key, kind, secure in arms:
            load_before = loads()
            with PeakMemory() as mem:
                opts = options(settings, 2, secure, sample_rate=args.q, local_epochs=args.local_epochs,
                               min_sites=len(homes), wait_for_sites=900)  # every site in every round
                rounds = (direct_rounds(settings, registry, homes, opts) if kind == "direct"
                          else flower_rounds(kind, settings, registry, homes, opts, args.isolation))
            out[key] = {"rounds": rounds, "peak_rss_mib": round(mem.mib), "load_before": load_before,
                        "load_after": loads()}
            print(json.dumps({key: out[key]}), flush=True)
            partial(args, out)  # what is measured so far survives a later arm's failure
        base = out["in_process"]["rounds"][-1]["round_seconds"]
        for key, value in out.items():
            if isinstance(value, dict) and "rounds" in value:
                value["ratio_to_in_process"] = round(value["rounds"][-1]["round_seconds"] / base, 2)
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def scale(args) -> dict:
    out = {"learners_per_site": args.learners_per_site, "runs": [], **workload(args)}
    for sites in [int(x) for x in args.sites_list.split(",")]:
        root = Path(tempfile.mkdtemp(prefix="aivo_fed_scale_"))
        try:
            settings, registry, homes, build_s = build(root, sites, args.learners_per_site, args.interactions)
            load_before = loads()
            with PeakMemory() as mem:
                opts = options(settings, 2, True, sample_rate=args.q, local_epochs=args.local_epochs,
                               min_sites=len(homes), wait_for_sites=900)
                rounds = flower_rounds("simulation", settings, registry, homes, opts)
            out["runs"].append({"sites": sites, "learners": sites * args.learners_per_site, "rounds": rounds,
                                "peak_rss_mib": round(mem.mib), "build_seconds": round(build_s, 1),
                                "load_before": load_before, "load_after": loads()})
            print(json.dumps(out["runs"][-1]), flush=True)
            partial(args, out)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return out


# --- ASSIST2015 across sites: Flower against the in-process federation -----------------------------------
def assist_brain():
    """The coordinator's starting Main Brain: benchmarks/kt_configs.py "assist2015" trained on the
    curriculum learners of federated_assist2015's split (cached under benchmarks/out)."""
    from aivo.brain.checkpoint import load_checkpoint, save_checkpoint
    from aivo.brain.train import train_main_brain
    from federated_assist2015 import load_split
    from kt_configs import PLANS

    path = HERE / "out" / "federated_sites" / "assist2015_pretrained"
    if not path.exists():
        train, _, _, curriculum, validation = load_split()
        result = train_main_brain(train=train.select_learners(list(curriculum)),
                                  validation=train.select_learners(list(validation)),
                                  config=PLANS["assist2015"].config, seed=0)
        save_checkpoint(result.brain, path)
    return load_checkpoint(path)


def assist_build(root: Path, split: str, num_sites: int) -> dict:
    """The coordinator (the pre-trained brain, no interactions) and `num_sites` site homes holding
    federated_assist2015's client learners (80% of the training learners), split at random or by
    the skill each learner practised most."""
    from aivo.brain.versions import register_brain
    from aivo.config import Settings
    from aivo.registry import open_registry
    from aivo.services.federation_setup import build_sites, split_at_random, split_by_skill
    from federated_assist2015 import load_split

    brain = assist_brain()
    train, _, clients, _, _ = load_split()
    client_log = train.select_learners(list(clients))
    settings = Settings(home=root / "coordinator", database_url=None, artifact_url=None, num_threads=1, seed=0)
    registry = open_registry(settings)
    register_brain(registry=registry, brain=brain, training_metrics={}, data_hash=None, promote=True, actor="bench",
                   reason="pre-trained on the curriculum learners")
    groups = (split_by_skill(client_log, num_sites, seed=0) if split == "skills"
              else split_at_random(list(clients), num_sites, seed=0))
    started = time.perf_counter()
    built = build_sites(coordinator=registry, site_logs=[client_log.select_learners(g) for g in groups],
                        sites_dir=root / "sites", actor="bench")
    registry.engine.dispose()
    return {"build_seconds": round(time.perf_counter() - started, 1),
            "sites": [{"name": b.name, "learners": b.learners, "interactions": b.interactions} for b in built]}


def assist_copy(pristine: Path, target: Path):
    """A fresh copy of the built federation (every arm starts from the same state)."""
    from aivo.config import Settings
    from aivo.registry import open_registry
    from aivo.services.federation_setup import existing_site_homes

    shutil.copytree(pristine, target)
    for env in (target / "sites").glob("*/site/site.env"):
        env.write_text(env.read_text().replace(str(pristine.resolve()), str(target.resolve())))
    settings = Settings(home=target / "coordinator", database_url=None, artifact_url=None, num_threads=1, seed=0)
    return settings, open_registry(settings), existing_site_homes(target / "sites")


def capped(opts):
    """`opts` with every learner's weight capped into [0, 1] although secure aggregation is off.
    Flower's arm runs with SecAgg+, which caps the weights (a site's payload must fit a range fixed
    before the round; `FederationOptions.capped_weights`); the in-process arm has no secure sum, so
    without this it would weight learners by their raw example counts: not the same aggregate."""
    from dataclasses import dataclass

    from aivo.sites.coordinator import FederationOptions

    @dataclass(frozen=True)
    class CappedWeights(FederationOptions):
        @property
        def capped_weights(self) -> bool:
            return True

    return CappedWeights(**opts.to_dict())


def assist_arm(pristine: Path, work: Path, runtime: str, args, dp: str, test) -> dict:
    from aivo.brain.versions import clear_cache, load_main_brain
    from aivo.privacy.accountants import noise_multiplier_for
    from federated_assist2015 import metrics_of

    clear_cache()
    settings, registry, homes = assist_copy(pristine, work)
    sigma = (noise_multiplier_for(target_epsilon=float(dp), delta=1e-5, sample_rate=args.q, steps=args.rounds)
             if dp != "off" else 0.0)
    opts = options(settings, args.rounds, runtime == "flower" and not args.no_secagg, min_sites=len(homes),
                   dp_enabled=dp != "off", noise_multiplier=sigma or 1.0, sample_rate=args.q, clip_norm=args.clip,
                   local_epochs=args.local_epochs, local_learning_rate=args.local_lr,
                   server_learning_rate=args.server_lr, gate_margin=args.gate_margin, seed=args.seed,
                   epsilon_budget=float(dp) * 1.01 if dp != "off" else 1e9)
    if runtime == "in_process" and not args.no_secagg:
        opts = capped(opts)  # the weighting SecAgg+ imposes on the Flower arm (see `capped`)
    load_before = loads()
    started = time.perf_counter()
    with PeakMemory() as mem:
        rounds = (direct_rounds(settings, registry, homes, opts) if runtime == "in_process"
                  else flower_rounds("simulation", settings, registry, homes, opts))
    seconds = time.perf_counter() - started
    active = load_main_brain(registry=registry)
    out = {"runtime": runtime, "secure_aggregation": opts.secure_aggregation, "dp": dp, "sigma": sigma or None,
           "test": metrics_of(active.brain, test), "version": active.version.version, "rounds": rounds,
           "seconds": round(seconds, 1), "peak_rss_mib": round(mem.mib), "load_before": load_before,
           "load_after": loads()}
    registry.engine.dispose()
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out), flush=True)
    return out


def assist2015(args) -> dict:
    from federated_assist2015 import load_split, metrics_of

    _, test, _, _, _ = load_split()
    out = {"sites": args.sites, "rounds": args.rounds, "q": args.q, "clip": args.clip,
           "site_gate_learners": args.site_gate_learners, "gate_margin": args.gate_margin,
           "local_epochs": args.local_epochs, "local_lr": args.local_lr, "server_lr": args.server_lr,
           "seed": args.seed, "pretrained_test": metrics_of(assist_brain(), test), "parts": {}}
    for split in args.splits.split(","):
        root = Path(tempfile.mkdtemp(prefix="aivo_fed_assist_"))
        try:
            load_before = loads()
            built = assist_build(root / "pristine", split, args.sites)
            built.update(load_before=load_before, load_after=loads())
            print(json.dumps(built), flush=True)
            for dp in args.dp.split(","):
                part = {"split": split, "built": built}
                began, load_before = datetime.now(timezone.utc), loads()
                for runtime in ("in_process", "flower"):  # a fresh copy and folder per arm (sites cache their registry)
                    part[runtime] = assist_arm(root / "pristine", root / f"{runtime}-{dp}", runtime, args, dp, test)
                part["difference"] = round(part["flower"]["test"]["auc"] - part["in_process"]["test"]["auc"], 4)
                out["parts"][f"{split}-dp{dp}"] = part
                save = {**out, "parts": {f"{split}-dp{dp}": part}, "command": command(),
                        "run": (f"{began:%Y-%m-%d %H:%M} UTC, {machine()}; 1-minute load average {load_before} at the "
                                f"start, {loads()} at the end")}
                (HERE / "out" / "federated_sites" / f"assist2015-{split}-dp{dp}.json").write_text(
                    json.dumps(save, indent=1))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return out


def work(part: dict) -> str:
    q = part.get("q", 1.0)
    return (f"{'every learner' if q == 1 else f'learners sampled with q {q:g}'}, user-level DP, "
            f"{part.get('interactions_per_learner', 60)} simulated interactions per learner, "
            f"{part.get('local_epochs', 5)} local epoch(s), each site scoring up to "
            f"{part.get('site_gate_learners', 1000)} learners' held-out tails")


def render(results: dict) -> str:
    lines = ["Every timing below was taken on a 2-core machine shared with other engineers' jobs: the 1-minute "
             "load average before and after each run is given next to it, and timings at a load above 2 are "
             "pessimistic (rerun each part alone on a quiet machine with the command shown).", ""]
    for o in [v for k, v in sorted(results.items()) if k.startswith("overhead")]:
        if "in_process" not in o or not o["in_process"].get("rounds"):
            continue
        lines += [f"**Round time, Flower vs in-process** ({o['sites']} sites x {o['learners_per_site']} learners, "
                  f"{work(o)}; run {o['run']}; `{o['command']}`). Target: Flower at most "
                  "1.5x the in-process round. A round's time is the coordinator's (sites, train, aggregate, "
                  "evaluate); round 2 is the steady state (round 1 also starts Flower's workers).", "",
                  "| runtime | round 1 (s) | round 2 (s) | round 2 stages (s) | vs in-process (round 2) "
                  "| peak memory, all processes (MiB) | load before / after |", "|---|---|---|---|---|---|---|"]
        where = ("TLS + SuperNode auth, a Flower process per message (`--isolation subprocess`)"
                 if o.get("isolation") == "subprocess" else
                 "TLS + SuperNode auth, one long-lived worker per site (`aivo site serve`)"
                 if o.get("isolation") == "process" else "no TLS, a Flower process per message")
        for key, label in (("in_process", "in-process (direct calls, sites one after another, no SecAgg)"),
                           ("simulation", "Flower simulation runtime (Ray, 2 workers), no SecAgg"),
                           ("simulation_secagg", "Flower simulation runtime, SecAgg+"),
                           ("deployment", f"SuperLink + SuperNodes on loopback, {where}, no SecAgg"),
                           ("deployment_secagg", f"SuperLink + SuperNodes on loopback, {where}, SecAgg+")):
            if key in o:
                r = o[key]["rounds"]
                stages = ", ".join(f"{k} {v}" for k, v in (r[-1].get("seconds") or {}).items())
                lines.append(f"| {label} | {r[0]['round_seconds']} | {r[-1]['round_seconds']} | {stages} | "
                             f"{r[-1]['round_seconds'] / o['in_process']['rounds'][-1]['round_seconds']:.2f} | "
                             f"{o[key]['peak_rss_mib']} | "
                             f"{o[key].get('load_before', '')} / {o[key].get('load_after', '')} |")
        lines += ["", o["note"]] if o.get("note") else []
        lines.append("")
    sc = results.get("scale")
    if sc:
        lines += [f"**Scale** (Flower simulation runtime, SecAgg+, {sc['learners_per_site']} learners per site, "
                  f"{work(sc)}; run {sc['run']}; `{sc['command']}`)", "",
                  "| sites | learners | round 1 (s) | round 2 (s) | round 2 stages (s) | peak memory, all processes (MiB) "
                  "| load before / after |", "|---|---|---|---|---|---|---|"]
        for run in sc["runs"]:
            r = run["rounds"]
            stages = ", ".join(f"{k} {v}" for k, v in (r[-1].get("seconds") or {}).items())
            lines.append(f"| {run['sites']} | {run['learners']} | {r[0]['round_seconds']} | {r[-1]['round_seconds']} "
                         f"| {stages} | {run['peak_rss_mib']} | {run.get('load_before', '')} / "
                         f"{run.get('load_after', '')} |")
        lines += ["", sc["note"]] if sc.get("note") else []
        lines.append("")
    a = results.get("assist2015")
    if a:
        lines += [f"**ASSIST2015 across {a['sites']} sites: Flower against the in-process federation.** The client learners of the ASSIST2015 federated benchmark (80% of the "
                  "training learners) are split over the sites at random or by the skill each learner practised most; "
                  "the coordinator starts from the Main Brain pre-trained on the curriculum learners "
                  f"(test AUC {a['pretrained_test']['auc']:.4f}). Both runtimes run the same coordinator and site "
                  f"code with the same settings and seed: {a['rounds']} rounds, q {a['q']:g}, clip {a['clip']:g}, "
                  f"local {a['local_epochs']} epoch(s) SGD {a['local_lr']:g}, server SGD {a['server_lr']:g}, FedAvg, "
                  f"gate margin {a.get('gate_margin', 0):g}, each site scoring {a.get('site_gate_learners', 1000)} learners' held-out tails per "
                  "round; in-process = direct calls to each site, no secure aggregation, with the learners' weights "
                  "capped into [0, 1] as SecAgg+ requires; Flower = the simulation runtime with SecAgg+. Test AUC on "
                  "test.csv. Target: |difference| <= 0.002.", "",
                  "| split | DP | in-process test AUC (log-loss) | Flower test AUC (log-loss) | difference | target met "
                  "| rounds applied (in-process / Flower) | epsilon | time in-process / Flower (s), load before / after |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for key, p in sorted(a["parts"].items(), key=lambda kv: (kv[1]["split"], kv[1]["flower"]["dp"] != "off")):
            i, f = p["in_process"], p["flower"]
            applied = (f"{sum(r['status'] == 'applied' for r in i['rounds'])} / "
                       f"{sum(r['status'] == 'applied' for r in f['rounds'])}")
            eps = f["rounds"][-1].get("epsilon_federation")
            dp = "off" if f["dp"] == "off" else f"epsilon {f['dp']} (sigma {f['sigma']:.3f})"
            lines.append(f"| {p['split']} | {dp} | {i['test']['auc']:.4f} ({i['test']['log_loss']:.4f}) | "
                         f"{f['test']['auc']:.4f} ({f['test']['log_loss']:.4f}) | "
                         f"{p['difference']:+.4f} | {'yes' if abs(p['difference']) <= 0.002 else 'NO'} | {applied} | "
                         f"{'' if eps is None else f'{eps:.2f}'} | {i['seconds']} ({i['load_before']} / "
                         f"{i['load_after']}), {f['seconds']} ({f['load_before']} / {f['load_after']}) |")
        lines += ["", "Test AUC and log-loss are rounded to 4 decimals. With the same seed both runtimes sample the same "
                  "learners at every site and, under DP, draw the same noise: the difference measures what the "
                  "runtime changes (transport, SecAgg+'s quantization), not the spread of the DP noise between runs. "
                  "Epsilon is the coordinator's `epsilon_federation` after the last round (RDP, delta 1e-5). Times "
                  "include copying the built federation, Ray's start-up (Flower arm) and scoring test.csv.", "",
                  "Runs (each part can be rerun alone with its command):", ""]
        lines += [f"- {key}: {p['run']}; `{p['command']}`" for key, p in a["parts"].items()]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["overhead", "scale", "assist2015", "report"])
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--sites-list", default="10,100")
    parser.add_argument("--learners-per-site", type=int, default=1000)
    parser.add_argument("--interactions", type=int, default=60)
    parser.add_argument("--runtimes", default="simulation,deployment")
    parser.add_argument("--isolation", choices=["process", "subprocess"], default="process",
                        help="overhead, deployment: each site's ClientApp in one long-lived worker (process, what "
                             "`aivo site serve` runs) or in a Flower process per message (subprocess)")
    parser.add_argument("--logs", default="", help="overhead, deployment: a folder for the output of the SuperLink "
                                                   "and of every site's SuperNode and worker")
    parser.add_argument("--secagg", choices=["off", "on", "both"], default="both",
                        help="overhead: the Flower arms without SecAgg+, with it, or both")
    parser.add_argument("--splits", default="random,skills", help="assist2015: random and/or skills")
    parser.add_argument("--dp", default="off,8", help="assist2015: off and/or target epsilons")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--q", type=float, default=None, help="sampling rate (assist2015: 0.2; others: 1)")
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--local-epochs", type=int, default=None,
                        help="local epochs (assist2015: 1; others: AIVO_LOCAL_EPOCHS, 5)")
    parser.add_argument("--local-lr", type=float, default=3.0)
    parser.add_argument("--server-lr", type=float, default=0.3)
    parser.add_argument("--gate-margin", type=float, default=1.0,
                        help="assist2015: the gate's margin (1: every round's candidate is promoted)")
    parser.add_argument("--site-gate-learners", type=int, default=None,
                        help="AIVO_GATE_MAX_LEARNERS of every site: held-out learners it scores per round "
                             "(assist2015: 300; others: the default, 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-secagg", action="store_true", help="assist2015: Flower without SecAgg+")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    for key, value in PART_DEFAULTS.get(args.what, {}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.site_gate_learners is not None:
        os.environ["AIVO_GATE_MAX_LEARNERS"] = str(args.site_gate_learners)  # every site's (and Ray worker's) setting
    import torch

    torch.set_num_threads(1)  # as every site's worker runs (Ray gives each actor one CPU; AIVO_NUM_THREADS=1)
    out = HERE / "out" / "federated_sites"
    out.mkdir(parents=True, exist_ok=True)
    if args.what != "report":
        began = datetime.now(timezone.utc)
        load_before = loads()
        global START_TIME, LOGS
        LOGS = args.logs
        START_TIME = f"{began:%Y-%m-%d %H:%M} UTC, {machine()}; 1-minute load average {load_before} at the start"
        result = {"overhead": overhead, "scale": scale, "assist2015": assist2015}[args.what](args)
        result["run"] = (f"{began:%Y-%m-%d %H:%M} UTC, {machine()}; 1-minute load average {load_before} at the start, "
                         f"{loads()} at the end")
        result["command"] = "python benchmarks/federated_sites.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        print(json.dumps(result, indent=1))
        if args.what != "assist2015":  # assist2015 saves each split and DP setting as it finishes
            (out / f"{result_name(args)}.json").write_text(json.dumps(result, indent=1))
    if args.write_results or args.what == "report":
        results = {}
        for path in sorted(out.glob("*.json")):
            data = json.loads(path.read_text())
            if path.stem.startswith("assist2015"):
                merged = results.setdefault("assist2015", {**data, "parts": {}})
                for key, part in data["parts"].items():
                    merged["parts"][key] = {**part, "run": data["run"], "command": data["command"]}
            else:
                results[path.stem] = data
        body = render(results)
        print(body)
        if args.write_results:
            write_section(heading="Federation across sites (Flower)", start=START, end=END, body=body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
