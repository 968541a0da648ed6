"""The main job end to end on embedded defaults: simulate, store, train, evaluate, clone and
train learners locally, run one federated round across three simulated sites on Flower (SecAgg+,
user-level DP), recommend."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from rich.progress import Progress

from aivo.brain.config import config_from_settings
from aivo.brain.versions import load_main_brain, register_brain
from aivo.clock import FrozenClock
from aivo.config import Settings
from aivo.data.simulator import SimulatorConfig, oracle_metrics, simulate_cohort
from aivo.registry import import_interactions
from aivo.services.clones import provision_clones
from aivo.services.federation import options_from_settings, simulate_federation
from aivo.services.federation_setup import build_sites, split_at_random
from aivo.services.site import site_status
from aivo.services.site_identity import settings_for_site
from aivo.services.learners import pseudonym_for
from aivo.services.local_training import train_learner
from aivo.services.main_brain import train_main_version
from aivo.services.recommendations import recommend_for_learner
from aivo.services.reports import write_training_report
from aivo.services.runtime import open_registry

log = logging.getLogger(__name__)


@dataclass
class DemoReport:
    seed: int
    num_learners: int
    interactions_per_learner: int
    oracle: dict
    imported: dict
    training: dict
    recommendations: dict[str, dict]
    report_path: str | None
    personalization: dict | None = None
    federated: dict | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(*, settings: Settings, num_learners: int, interactions_per_learner: int, seed: int,
             num_shown: int = 3, num_personalized: int = 50, progress: bool = False) -> DemoReport:
    seconds: dict[str, float] = {}
    registry = open_registry(settings)

    started = time.perf_counter()
    cohort = simulate_cohort(config=SimulatorConfig(num_learners=num_learners,
                                                    interactions_per_learner=interactions_per_learner), seed=seed)
    seconds["simulate"] = time.perf_counter() - started

    started = time.perf_counter()
    with registry.session() as session:
        # The simulator's own import keeps its truth (p_true) for the oracle comparison; no other ingest can.
        imported = import_interactions(session=session, log=cohort.log, secret_key=settings.resolved_secret_key(),
                                       keep_evaluation_truth=True)
    seconds["import"] = time.perf_counter() - started

    # Train from what the registry holds (pseudonymized), exactly as the service would.
    started = time.perf_counter()
    report = train_main_version(registry=registry, settings=settings, config=config_from_settings(settings),
                                seed=seed, promote="if-better", group_by=("accommodation", "grade"),
                                actor="aivo demo", progress=progress)
    seconds["train"] = time.perf_counter() - started

    brain = load_main_brain(registry=registry, version=report.version.version).brain
    report_path = write_training_report(
        path=settings.ensure_home() / "reports" / f"{report.version.version}.png",
        title=f"Main Brain {report.version.version}", history=brain.info.get("history", []),
        evaluation=report.test)

    raw_ids = [str(x) for x in cohort.log.frame["learner_id"].drop_duplicates()]
    shown = raw_ids[:num_shown]
    personalization = federated = None
    if num_personalized > 0:
        started = time.perf_counter()
        personalization = _personalize(
            registry=registry, settings=settings, progress=progress,
            learner_ids=[pseudonym_for(settings=settings, learner_id=x) for x in raw_ids[:num_personalized]])
        seconds["personalize"] = time.perf_counter() - started
        started = time.perf_counter()
        federated = _federate_three_sites(settings=settings, brain=load_main_brain(registry=registry).brain,
                                          log=cohort.log.select_learners(raw_ids[:num_personalized]), seed=seed)
        seconds["federate"] = time.perf_counter() - started

    # The cohort lives in simulated time: recommend as of just after its last interaction.
    clock = FrozenClock(cohort.log.frame["timestamp"].max().to_pydatetime() + timedelta(hours=1))
    recommendations = {}
    for raw_id in shown:
        rec = recommend_for_learner(registry=registry, settings=settings, clock=clock,
                                    learner_id=pseudonym_for(settings=settings, learner_id=raw_id))
        recommendations[raw_id] = rec.as_dict()
    training = {"version": report.version.version, "promoted": report.promoted,
                "promotion_reason": report.promotion_reason, "best_epoch": report.best_epoch,
                "epochs_run": report.epochs_run, "train_seconds": report.train_seconds,
                "split": report.split, "validation": report.validation, "test": report.test}
    return DemoReport(seed=seed, num_learners=num_learners, interactions_per_learner=interactions_per_learner,
                      oracle=oracle_metrics(cohort.log).as_dict(),
                      imported={"rows_inserted": imported.rows_inserted, "rows_skipped": imported.rows_skipped,
                                "learners": imported.learners},
                      training=training, recommendations=recommendations,
                      report_path=str(report_path) if report_path else None,
                      personalization=personalization, federated=federated, seconds={k: round(v, 2) for k, v in seconds.items()})


def _personalize(*, registry, settings: Settings, learner_ids: list[str], progress: bool) -> dict:
    """Clone the active Main Brain for these learners and train each clone on its own learner's
    interactions only: the same service functions as `aivo clone` and `aivo train-local`."""
    provisioned = provision_clones(registry=registry, settings=settings, learner_ids=learner_ids)
    reports = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("training clones, one learner's data each", total=len(learner_ids))
        for learner_id in learner_ids:
            reports.append(train_learner(registry=registry, settings=settings, learner_id=learner_id))
            bar.advance(task)
    personal = [r.metrics.get("holdout_personal", {}).get("log_loss") for r in reports]
    main = [r.metrics.get("holdout_main", {}).get("log_loss") for r in reports]
    pairs = [(m, p) for m, p in zip(main, personal) if m is not None and p is not None]
    return {
        "clones_created": provisioned.created, "clones_trained": len(reports),
        "active": sum(r.status == "active" for r in reports),
        "fallback": sum(r.status == "fallback" for r in reports),
        "mean_holdout_log_loss_main": float(np.mean([m for m, _ in pairs])) if pairs else None,
        "mean_holdout_log_loss_personal": float(np.mean([p for _, p in pairs])) if pairs else None,
        "median_seconds_per_learner": float(np.median([r.seconds for r in reports])) if reports else None,
        "personal_bytes": reports[0].personal_bytes if reports else None,
    }


SCHOOLS = ("school-north", "school-east", "school-south")


def _federate_three_sites(*, settings: Settings, brain, log, seed: int) -> dict:
    """The federated step as it runs across schools: three simulated sites (each its own registry
    folder under AIVO_HOME/demo-federation, holding a third of these learners), a coordinator that
    holds the Main Brain and no interactions, one round through Flower's simulation runtime with
    SecAgg+ and user-level DP (the settings' strategy, sampling rate and noise)."""
    root = settings.ensure_home() / "demo-federation"
    shutil.rmtree(root, ignore_errors=True)
    coordinator_settings = Settings(home=root / "coordinator", database_url=None, artifact_url=None,
                                    num_threads=settings.num_threads, seed=seed)
    coordinator = open_registry(coordinator_settings)
    register_brain(registry=coordinator, brain=brain, training_metrics={}, data_hash=None, promote=True,
                   actor="aivo demo", reason="the demo's Main Brain, the federation's starting point")
    learners = list(dict.fromkeys(map(str, log.frame["learner_id"])))
    groups = split_at_random(learners, len(SCHOOLS), seed=seed)
    built = build_sites(coordinator=coordinator, site_logs=[log.select_learners(g) for g in groups],
                        sites_dir=root / "sites", names=SCHOOLS, actor="aivo demo")
    options = options_from_settings(settings, rounds=1, min_sites=len(SCHOOLS), secure_aggregation=True)
    report = simulate_federation(registry=coordinator, settings=coordinator_settings,
                                 site_homes=[b.home for b in built], options=options, actor="aivo demo")
    (rnd,) = report.rounds
    sites = []
    for site in built:
        site_settings = settings_for_site(site.home)
        site_registry = open_registry(site_settings)
        status = site_status(registry=site_registry, settings=site_settings, limit=1)
        site_registry.engine.dispose()
        last = status.rounds[0] if status.rounds else None
        sites.append({"site": site.name, "learners": site.learners, "interactions": site.interactions,
                      "status": next((s["status"] for s in rnd["sites"] if s.get("site") == site.name), "absent"),
                      "sent": None if last is None else {
                          "pool": last.num_pool, "sampled": last.num_sampled, "accepted": last.num_accepted,
                          "weight_total": last.weight_total, "sum_norm": last.payload_norm,
                          "values": rnd["aggregation"].get("numel"), "status": last.status, "reason": last.reason}})
    counts = rnd["counts"]
    coordinator.engine.dispose()
    return {"runtime": "Flower simulation runtime, 3 SuperNodes", "status": rnd["status"], "message": rnd["message"],
            "promoted": bool(rnd["version_after"]), "version_before": rnd["version_before"],
            "version_after": rnd["version_after"], "secure_aggregation": options.secure_aggregation,
            "counts": {"sites": counts.get("contributing", 0), "pool": counts.get("learners_pool", 0),
                       "sampled": counts.get("learners_sampled", 0), "accepted": counts.get("learners_accepted", 0)},
            "improvement": rnd["improvement"], "metrics_before": rnd["metrics_before"],
            "metrics_after": rnd["metrics_after"], "privacy": rnd["privacy"], "warnings": report.warnings,
            "strategy": options.strategy, "sites": sites, "coordinator_home": str(root / "coordinator"),
            "seconds": report.seconds}
