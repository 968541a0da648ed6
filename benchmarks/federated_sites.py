"""Federation across sites on Flower: round time against the in-process round, and scale.

Sites are made from the simulator (`aivo.services.federation_setup.simulated_cohort_sites`: a
curriculum cohort trains the coordinator's Main Brain, `--learners-per-site` learners per site,
each site its own SQLite registry with clones). Every arm runs the same site code
(`SiteService.contribute` / `.evaluate`) and the same coordinator code:

* **in-process**: the coordinator calls each site's handler directly, one after another (no
  Flower, no secure aggregation): today's in-process round, moved to sites;
* **simulation**: `simulate_federation` (Flower's simulation runtime, Ray), with SecAgg+ and without;
* **deployment**: a real `flower-superlink` and one `flower-supernode` per site on loopback
  (insecure: TLS costs are not what is measured), `run_federation_deployment`.

A round's time is the coordinator's (sites, train, aggregate, evaluate), for the second round of a
run (the first also loads the sites' Python in Flower's workers); peak memory is the highest
resident memory of this process plus every process it started (sampled every 0.2 s).

    python benchmarks/federated_sites.py overhead --sites 10 --learners-per-site 1000 --write-results
    python benchmarks/federated_sites.py scale --sites 10,100 --learners-per-site 100 --write-results
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

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from bench import machine, write_section  # noqa: E402

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


def options(settings, rounds, secure):
    from aivo.services.federation import options_from_settings

    return options_from_settings(settings, rounds=rounds, min_sites=2, secure_aggregation=secure, dp_enabled=True,
                                 sample_rate=1.0, noise_multiplier=1.0, round_timeout=3600, gate_margin=1.0,
                                 epsilon_budget=1e9)  # timing, not privacy: every learner takes part in every round


def in_process_round(settings, registry, homes, opts) -> dict:
    """The round's work by direct calls: each site's payload, the sum, the coordinator's noisy
    step, each site's evaluation sums (what a round does, without Flower)."""
    from aivo.federated.dp import UserLevelDP
    from aivo.federated.round import candidate_brain
    from aivo.federated.updates import UpdateSpec
    from aivo.personalization.parts import partition_parameters
    from aivo.services.federation import CoordinatorService
    from aivo.services.site_identity import settings_for_site, site_for
    from aivo.sites.coordinator import shared_arrays
    from aivo.sites.evaluation import MetricSums
    from aivo.sites.protocol import RoundSettings

    hooks = CoordinatorService(registry=registry, actor="bench")
    version = hooks.active_version()
    partition = partition_parameters(version.brain.model, frozen_prefixes=opts.freeze_layers)
    params = dict(version.brain.model.named_parameters())
    spec = UpdateSpec(main_version=version.name, shapes={n: tuple(params[n].shape) for n in partition.aggregated})
    settings_ = RoundSettings(round_id="bench", version=version.name, version_sha256=version.sha256, dp=True,
                              secure=False, epochs=opts.local_epochs, learning_rate=opts.local_learning_rate,
                              sample_rate=opts.sample_rate, noise_multiplier=opts.noise_multiplier,
                              epsilon_budget=opts.epsilon_budget)
    sites = [site_for(settings_for_site(h)) for h in homes]
    started = time.perf_counter()
    shared = shared_arrays(version.brain, spec)
    payloads = [site.contribute(settings=settings_, shared=shared) for site in sites]
    train = time.perf_counter() - started
    total = sum(p.total for p in payloads)
    pool = sum(p.num_pool for p in payloads)
    strategy = UserLevelDP(noise_multiplier=opts.noise_multiplier, clip_norm=opts.clip_norm,
                           sample_rate=opts.sample_rate).wrap(opts.make_strategy(), num_eligible=pool)
    state = strategy.start(numel=spec.numel, generator=np.random.default_rng())
    state.merge(total=total, weight_total=sum(p.weight_total for p in payloads),
                count=sum(p.num_accepted for p in payloads))
    candidate = candidate_brain(version.brain, spec.unflatten(state.result()), version.name)
    cand = shared_arrays(candidate, spec)
    sums = [site.evaluate(settings=settings_, candidate=cand, bins=opts.evaluation_bins) for site in sites]
    before = sum((b for b, _ in sums), MetricSums.empty(opts.evaluation_bins))
    seconds = time.perf_counter() - started
    return {"round_seconds": round(seconds, 2), "train_seconds": round(train, 2), "learners": pool,
            "auc_before": before.metrics()["auc"]}


def flower_rounds(kind, settings, registry, homes, opts) -> list[dict]:
    from aivo.services.federation import run_federation_deployment, simulate_federation

    if kind == "simulation":
        report = simulate_federation(registry=registry, settings=settings, site_homes=homes, options=opts,
                                     actor="bench")
        return [{"round_seconds": round(sum(r["seconds"].values()), 2), "seconds": r["seconds"],
                 "status": r["status"], "message": r["message"], "sites": r["counts"].get("contributing")}
                for r in report.rounds]
    port = 19500
    env = {**os.environ, "AIVO_HOME": str(settings.home), "FLWR_DISABLE_UPDATE_CHECK": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "aivo", "federation", "serve", "--insecure", "--no-auth",
                               "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        time.sleep(8)
        for i, home in enumerate(homes):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "aivo", "site", "serve", "--insecure", "--no-auth", "--superlink",
                 f"127.0.0.1:{port}", "--port", str(port + 10 + i)], env={**env, "AIVO_HOME": str(home)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        report = run_federation_deployment(registry=registry, settings=settings, options=opts, actor="bench",
                                           superlink=f"127.0.0.1:{port}", insecure=True)
        return [{"round_seconds": round(sum((r["seconds"] or {}).values()), 2), "seconds": r["seconds"],
                 "status": r["status"], "sites": (r["counts"] or {}).get("contributing")} for r in report.rounds]
    finally:
        import signal

        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)


def overhead(args) -> dict:
    root = Path(tempfile.mkdtemp(prefix="aivo_fed_sites_"))
    try:
        settings, registry, homes, build_s = build(root, args.sites, args.learners_per_site, args.interactions)
        out = {"sites": args.sites, "learners_per_site": args.learners_per_site, "build_seconds": round(build_s, 1)}
        with PeakMemory() as mem:
            in_process_round(settings, registry, homes, options(settings, 1, False))  # warm: as Flower's round 2
            out["in_process"] = in_process_round(settings, registry, homes, options(settings, 1, False))
        out["in_process"]["peak_rss_mib"] = round(mem.mib)
        for kind, secure in [(k, s) for k in args.runtimes.split(",") for s in (False, True)]:
            with PeakMemory() as mem:
                rounds = flower_rounds(kind, settings, registry, homes, options(settings, 2, secure))
            out[f"{kind}{'_secagg' if secure else ''}"] = {"rounds": rounds, "peak_rss_mib": round(mem.mib)}
        base = out["in_process"]["round_seconds"]
        for key, value in out.items():
            if isinstance(value, dict) and "rounds" in value:
                value["ratio_to_in_process"] = round(value["rounds"][-1]["round_seconds"] / base, 2)
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def scale(args) -> dict:
    out = {"learners_per_site": args.learners_per_site, "runs": []}
    for sites in [int(x) for x in args.sites_list.split(",")]:
        root = Path(tempfile.mkdtemp(prefix="aivo_fed_scale_"))
        try:
            settings, registry, homes, build_s = build(root, sites, args.learners_per_site, args.interactions)
            with PeakMemory() as mem:
                rounds = flower_rounds("simulation", settings, registry, homes, options(settings, 2, True))
            out["runs"].append({"sites": sites, "learners": sites * args.learners_per_site, "rounds": rounds,
                                "peak_rss_mib": round(mem.mib), "build_seconds": round(build_s, 1)})
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return out


def render(results: dict) -> str:
    lines = []
    o = results.get("overhead")
    if o:
        lines += [f"**Round time, Flower vs in-process** ({o['sites']} sites x {o['learners_per_site']} learners, "
                  f"every learner sampled, user-level DP; run {o['run']}; `{o['command']}`). Target: Flower at most "
                  "1.5x the in-process round.", "",
                  "| runtime | round 1 (s) | round 2 (s) | vs in-process (round 2) | peak memory, all processes (MiB) |",
                  "|---|---|---|---|---|",
                  f"| in-process (direct calls, sites one after another) | | {o['in_process']['round_seconds']} | 1.00 "
                  f"| {o['in_process']['peak_rss_mib']} |"]
        for key, label in (("simulation", "Flower simulation runtime (Ray, 2 workers), no SecAgg"),
                           ("simulation_secagg", "Flower simulation runtime, SecAgg+"),
                           ("deployment", "SuperLink + SuperNodes on loopback, no SecAgg"),
                           ("deployment_secagg", "SuperLink + SuperNodes on loopback, SecAgg+")):
            if key in o:
                r = o[key]["rounds"]
                lines.append(f"| {label} | {r[0]['round_seconds']} | {r[-1]['round_seconds']} | "
                             f"{o[key]['ratio_to_in_process']:.2f} | {o[key]['peak_rss_mib']} |")
        lines.append("")
    sc = results.get("scale")
    if sc:
        lines += [f"**Scale** (Flower simulation runtime, SecAgg+, {sc['learners_per_site']} learners per site; "
                  f"run {sc['run']}; `{sc['command']}`)", "",
                  "| sites | learners | round 1 (s) | round 2 (s) | peak memory, all processes (MiB) |", "|---|---|---|---|---|"]
        for run in sc["runs"]:
            r = run["rounds"]
            lines.append(f"| {run['sites']} | {run['learners']} | {r[0]['round_seconds']} | {r[-1]['round_seconds']} "
                         f"| {run['peak_rss_mib']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["overhead", "scale"])
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--sites-list", default="10,100")
    parser.add_argument("--learners-per-site", type=int, default=1000)
    parser.add_argument("--interactions", type=int, default=60)
    parser.add_argument("--runtimes", default="simulation,deployment")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # as every site's worker runs (Ray gives each actor one CPU; AIVO_NUM_THREADS=1)
    began = datetime.now(timezone.utc)
    result = overhead(args) if args.what == "overhead" else scale(args)
    result["run"] = f"{began:%Y-%m-%d %H:%M} UTC, {machine()}"
    result["command"] = "python benchmarks/federated_sites.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(json.dumps(result, indent=1))
    out = HERE / "out" / "federated_sites"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.what}.json").write_text(json.dumps(result, indent=1))
    if args.write_results:
        results = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
        write_section(heading="Federation across sites (Flower)", start=START, end=END, body=render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
