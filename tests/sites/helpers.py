"""A small federation on disk: a coordinator registry (SQLite, no interactions) with the small
test brain, and site homes built from the small simulated cohort."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aivo.config import Settings
from aivo.registry import open_registry
from aivo.services.federation_setup import build_sites, split_at_random
from aivo.brain.versions import clear_cache, register_brain


@dataclass
class Federation:
    settings: Settings
    registry: object
    homes: list[Path]
    names: list[str]
    learners: list[list[str]]  # raw ids per site


def make_federation(root: Path, small_world, num_sites: int = 3, *, learners_per_site: int | None = None) -> Federation:
    clear_cache()
    settings = Settings(home=root / "coordinator", database_url=None, artifact_url=None, num_threads=1, seed=0)
    registry = open_registry(settings)
    register_brain(registry=registry, brain=small_world.brain, training_metrics={}, data_hash=None, promote=True,
                   actor="tests", reason="setup")
    ids = sorted(map(str, small_world.log.frame["learner_id"].unique()))
    groups = split_at_random(ids, num_sites, seed=0)
    if learners_per_site is not None:
        groups = [g[:learners_per_site] for g in groups]
    names = [f"school-{chr(ord('a') + i)}" for i in range(num_sites)]
    built = build_sites(coordinator=registry, site_logs=[small_world.log.select_learners(g) for g in groups],
                        sites_dir=root / "sites", names=names, actor="tests")
    return Federation(settings, registry, [b.home for b in built], names, groups)


def main_params(registry, version: str | None = None) -> dict[str, np.ndarray]:
    from aivo.brain.versions import load_main_brain

    brain = load_main_brain(registry=registry, version=version).brain
    return {n: p.detach().numpy().copy() for n, p in brain.model.named_parameters()}
