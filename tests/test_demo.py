"""`aivo demo` end to end as a subprocess (small cohort): every stage leaves its mark."""

from __future__ import annotations

import json
from pathlib import Path

from aivo.config import Settings
from aivo.registry import open_registry
from aivo.registry.tables import FederatedUpdate, Interaction, LearnerModel, MainModelVersion
import sqlalchemy as sa


def test_demo_runs_every_stage(run_cli, aivo_home):
    proc = run_cli("demo", "-n", "60", "--interactions", "30", "--personalize", "8", "--show", "1", "--json",
                   env={"AIVO_MAX_EPOCHS": "3", "AIVO_LOCAL_EPOCHS": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["num_learners"] == 60
    assert report["imported"]["rows_inserted"] == 60 * 30
    training = report["training"]
    assert training["promoted"] and training["version"]
    assert 0.0 <= training["test"]["metrics"]["auc"] <= 1.0
    assert 0.5 < report["oracle"]["auc"] <= 1.0
    personal = report["personalization"]
    assert personal["clones_created"] == personal["clones_trained"] == 8
    assert personal["active"] + personal["fallback"] == 8
    federated = report["federated"]
    assert federated["status"] in ("applied", "rejected")  # the gate decides; both are recorded
    assert federated["counts"]["pool"] == 8 and federated["counts"]["sites"] == 3  # three schools on Flower
    assert federated["privacy"]["enabled"] and federated["privacy"]["epsilon_round"] > 0
    assert [s["site"] for s in federated["sites"]] == ["school-north", "school-east", "school-south"]
    assert sum(s["sent"]["pool"] for s in federated["sites"]) == 8  # what each site sent, from its own records
    (raw_id, rec), = report["recommendations"].items()
    assert rec["next_items"] and rec["skills"]

    # What the demo reported is what the registry holds.
    registry = open_registry(Settings(home=aivo_home))
    with registry.session(read_only=True) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(LearnerModel)) == 8
        active = session.scalars(sa.select(MainModelVersion).where(MainModelVersion.status == "active")).all()
        assert len(active) == 1 and active[0].version == training["version"]
    # The federation's coordinator holds the round, the versions, and no interactions.
    coordinator = open_registry(Settings(home=Path(federated["coordinator_home"])))
    with coordinator.session(read_only=True) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(FederatedUpdate)) == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(Interaction)) == 0
        active = session.scalars(sa.select(MainModelVersion).where(MainModelVersion.status == "active")).all()
        assert (active[0].version != training["version"]) == (federated["status"] == "applied")
