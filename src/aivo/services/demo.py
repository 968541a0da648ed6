"""The main job end to end on embedded defaults: simulate, store, train, evaluate, recommend."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from aivo.clock import FrozenClock
from aivo.config import Settings
from aivo.data.simulator import SimulatorConfig, simulate_cohort
from aivo.registry import import_interactions, open_registry
from aivo.services.learners import pseudonym_for
from aivo.services.main_brain import load_main_brain, train_main_version
from aivo.services.recommendations import recommend_for_learner

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
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(*, settings: Settings, num_learners: int, interactions_per_learner: int, seed: int,
             num_shown: int = 3, progress: bool = False) -> DemoReport:
    from aivo.brain.service import apply_threads, config_from_settings
    from aivo.data.simulator import oracle_metrics
    from aivo.services.reports import write_training_report

    apply_threads(settings)
    seconds: dict[str, float] = {}
    registry = open_registry(settings)

    started = time.perf_counter()
    cohort = simulate_cohort(config=SimulatorConfig(num_learners=num_learners,
                                                    interactions_per_learner=interactions_per_learner), seed=seed)
    seconds["simulate"] = time.perf_counter() - started

    started = time.perf_counter()
    with registry.session() as session:
        imported = import_interactions(session=session, log=cohort.log, secret_key=settings.resolved_secret_key())
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

    # The cohort lives in simulated time: recommend as of just after its last interaction.
    clock = FrozenClock(cohort.log.frame["timestamp"].max().to_pydatetime() + timedelta(hours=1))
    recommendations = {}
    shown = [str(x) for x in cohort.log.frame["learner_id"].drop_duplicates().head(num_shown)]
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
                      seconds={k: round(v, 2) for k, v in seconds.items()})
