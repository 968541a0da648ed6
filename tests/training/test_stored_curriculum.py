"""The versions train-main and the pipeline register carry the teaching order the served policies read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aivo.brain.config import BrainConfig
from aivo.brain.curriculum import CurriculumKnowledge
from aivo.brain.versions import load_main_brain
from aivo.config import Settings
from aivo.data.schema import make_log
from aivo.services.main_brain import train_main_version
from aivo.services.pipeline import PipelineConfig, run_pipeline
from aivo.services.recommendations import policy_catalog
from tests.training.conftest import TINY_BRAIN, import_log

# Taught in this order, which is not the order of the ids (a brain without the stored order
# would rank them a-, m-, z- and make a-third's prerequisite nothing).
TAUGHT = ["z-first", "m-second", "a-third"]


def _course_log(num_learners: int = 30):
    rng = np.random.default_rng(0)
    rows = []
    for learner in range(num_learners):
        order = 0
        for position, skill in enumerate(TAUGHT):
            for _ in range(6):
                rows.append({"learner_id": f"L{learner:03d}", "item_id": f"{skill}.i{int(rng.integers(3))}",
                             "skill_ids": skill, "correct": int(rng.random() < 0.5 + 0.1 * position),
                             "order": order, "subject": "math", "grade": 3})
                order += 1
    return make_log(pd.DataFrame(rows))


def _assert_teaching_order(brain) -> None:
    knowledge = CurriculumKnowledge.from_dict(brain.info["curriculum"])
    assert [s.skill_id for s in knowledge.skills] == TAUGHT and knowledge.bkt is None  # order only
    catalog = policy_catalog(brain)
    assert list(catalog.skill_ids) == TAUGHT
    assert [catalog.skill_ids[p] if p >= 0 else None for p in catalog.prerequisite] == [None, "z-first", "m-second"]
    assert list(catalog.skill_position) == [0, 1, 2]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_train_main_stores_the_teaching_order(registry, settings: Settings):
    import_log(registry, _course_log())
    report = train_main_version(registry=registry, settings=settings, config=BrainConfig(**TINY_BRAIN), seed=0,
                                actor="tests")
    _assert_teaching_order(load_main_brain(registry=registry, version=report.version.version).brain)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_pipeline_stores_the_teaching_order(registry, settings: Settings, clock):
    import_log(registry, _course_log())
    config = PipelineConfig.from_settings(settings, brain=TINY_BRAIN,
                                          harness={"thresholds": {"auc": 0.0, "subgroup_gap": None}})
    report = run_pipeline(registry=registry, settings=settings, config=config, trigger="test", actor="tests",
                          clock=clock)
    _assert_teaching_order(load_main_brain(registry=registry, version=report.candidate_version).brain)
