"""A registry filled by the real services, for the dashboard's tests: interactions (timestamped
three weeks ago, and newer ones from another population), a trained Main Brain with its curve
and report image, clones trained locally, a federated round with user-level DP, a round across sites, a skipped
federated job, a continuous-training pipeline job, two drift checks (one run without
scheduling), and keys of every role.

Everything the dashboard shows is what these services wrote; the tests compare the pages with
the rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import torch

from aivo.config import Settings
from aivo.data.schema import make_log
from aivo.services.aggregation import AggregationOptions, run_aggregation
from aivo.services.clones import provision_clones
from aivo.services.local_training import train_learner
from aivo.registry import Registry, import_interactions, open_registry
from aivo.registry.api_keys import create_api_key
from aivo.services.learners import pseudonym_for
from aivo.services.main_brain import train_main_version
from aivo.services.reports import write_training_report
from aivo.services.drift import check_drift
from aivo.services.federation import CoordinatorService, options_from_settings
from aivo.services.jobs import make_worker, submit_job
from aivo.sites.coordinator import RoundOutcome, SiteRecord
from tests.brain.helpers import TINY, random_log, tiny_config

SECRET = "dashboard-tests-secret-key-0123456789abcdef"
TENANT, OTHER_TENANT = "school-a", "school-b"
SHEET = {"source": "random logs of tests/brain/helpers.py", "license": "CC0, synthetic",
         "collection_process": "generated for the dashboard tests", "pii_handling": "no real people; ids pseudonymized",
         "intended_use": "tests of the dashboard"}
LAX = {"thresholds": {"auc": 0.5, "subgroup_gap": None}}
CLASS_LIST = ("L001", "L002")  # the teacher key's learners
CLONED = [f"L{i:03d}" for i in range(10)]


@dataclass
class Seeded:
    settings: Settings
    registry: Registry
    tokens: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)
    version: str = ""
    round_id: int | None = None
    site_round_id: int | None = None
    skipped_job: int | None = None
    pipeline_job: int | None = None

    def pseudonym(self, raw: str) -> str:
        return pseudonym_for(settings=self.settings, learner_id=raw)


def make_settings(home: Path, **overrides) -> Settings:
    values = dict(home=home, secret_key=SECRET, num_threads=1, api_key_cache_s=0.0, scheduler_enabled=False,
                  recommender_processes=0, hpo_trials=0, hpo_timeout_s=120.0, max_epochs=4, job_lease_s=6.0,
                  min_learners=3, local_epochs=2)
    values.update(overrides)
    return Settings(**values)


def timestamped_log(*, num_learners: int, seed: int, now: datetime):
    """`random_log` with a grade per learner and timestamps from three weeks ago (before the
    drift checks' seven-day window)."""
    frame = random_log(num_learners=num_learners, length=30, num_items=9, seed=seed).frame
    start = now - timedelta(days=21)
    learner_index = frame["learner_id"].str[1:].astype(int)
    frame["timestamp"] = [start + timedelta(minutes=40 * int(i) + 3 * int(o))
                          for i, o in zip(learner_index, frame["order"])]
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["grade"] = 3 + learner_index % 2
    return make_log(frame)


def seed(home: Path) -> Seeded:
    torch.set_num_threads(1)
    settings = make_settings(home)
    registry = open_registry(settings)
    now = datetime.now(timezone.utc)
    out = Seeded(settings=settings, registry=registry)
    with registry.session() as session:
        import_interactions(session=session, log=timestamped_log(num_learners=40, seed=1, now=now),
                            secret_key=SECRET.encode(), tenant=TENANT)
        other = random_log(num_learners=3, length=10, num_items=9, seed=2).frame
        other["learner_id"] = "B" + other["learner_id"].astype(str)
        import_interactions(session=session, log=make_log(other), secret_key=SECRET.encode(), tenant=OTHER_TENANT)

    report = train_main_version(registry=registry, settings=settings, config=tiny_config(max_epochs=4), seed=0,
                                group_by=("grade",), actor="tests")
    out.version = report.version.version
    write_training_report(path=settings.home / "reports" / f"{out.version}.png", title=f"Main Brain {out.version}",
                          history=report.version.training_metrics["history"], evaluation=report.test)

    cloned = [out.pseudonym(x) for x in CLONED]
    provision_clones(registry=registry, settings=settings, learner_ids=cloned, tenant=TENANT)
    for learner in cloned:
        train_learner(registry=registry, settings=settings, learner_id=learner)
    outcome = run_aggregation(registry=registry, actor="tests",
                              options=AggregationOptions.from_settings(settings, min_learners=3, seed=0))
    out.round_id = outcome.federated_update_id
    # A round across sites, written by the coordinator's own commit (the Flower runtime that
    # would produce the outcome is too slow for this suite): per-site participation and the
    # round-level epsilon the coordinator's accountant computes.
    across = RoundOutcome(
        number=1, version_before=out.version, status="rejected",
        message="candidate not promoted: held-out AUC fell", counts={"sites": 3, "contributing": 1, "rejected": 1,
                                                                     "learners_accepted": 4},
        sites=[SiteRecord(node_id=11, site="north-school", status="accepted"),
               SiteRecord(node_id=12, site="south-school", status="rejected", reason="its sum holds NaN"),
               SiteRecord(node_id=13, status="refused", reason="node not enrolled in this federation")])
    out.site_round_id = CoordinatorService(registry=registry, actor="tests").commit_round(
        across, options_from_settings(settings)).federated_update_id

    worker = make_worker(registry=registry, settings=settings, poll_s=0.1)
    out.skipped_job = submit_job(registry=registry, settings=settings, kind="federated", datasheet=SHEET,
                                 created_by="tests", config={"min_learners": 1000}, reason="a round nobody can join").id
    worker.run_once()
    out.pipeline_job = submit_job(registry=registry, settings=settings, kind="main_brain", datasheet=SHEET,
                                  created_by="tests", config={"brain": {**TINY, "max_epochs": 3}}, policy=LAX,
                                  reason="nightly retraining").id
    worker.run_once()

    # Newer answers from another population (three items only, answers flipped), timestamped after
    # the active version's activation: the drift checks compare them with what it was trained on.
    activated = report.version.activated_at
    shifted = random_log(num_learners=12, length=30, num_items=3, seed=5).frame
    shifted["learner_id"] = "S" + shifted["learner_id"].astype(str)
    shifted["correct"] = 1 - shifted["correct"]
    span = (datetime.now(timezone.utc) - activated) / (len(shifted) + 1)
    shifted["timestamp"] = pd.to_datetime([activated + span * (i + 1) for i in range(len(shifted))], utc=True)
    with registry.session() as session:
        import_interactions(session=session, log=make_log(shifted), secret_key=SECRET.encode(), tenant=TENANT)
    # A check that finds drift but was told not to schedule anything (`aivo drift check
    # --no-schedule`), and one that may schedule (the scheduler's guards decide).
    check_drift(registry=registry, settings=settings, schedule=False)
    check_drift(registry=registry, settings=settings, schedule=True)

    specs = {"admin": ("admin", TENANT, ()), "service": ("service", TENANT, ()),
             "teacher": ("teacher", TENANT, [out.pseudonym(x) for x in CLASS_LIST]),
             "counsellor": ("counsellor", TENANT, ()), "admin_b": ("admin", OTHER_TENANT, ())}
    with registry.session() as session:
        for name, (role, tenant, learners) in specs.items():
            created = create_api_key(session=session, role=role, tenant=tenant, name=name, learner_ids=learners,
                                     actor="tests")
            out.tokens[name], out.key_ids[name] = created.token, created.key.key_id
    return out
