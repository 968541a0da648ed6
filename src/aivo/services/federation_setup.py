"""Building a federation on one machine: site homes filled with learners, and a coordinator
with a Main Brain and no interactions (`aivo federation simulate`, the demo, tests, benchmarks).

`build_sites` takes one interaction log per site: each site home gets its own registry (those
learners' interactions, pseudonymized with the site's own key), a clone for every learner, a
key pair, and is enrolled at the coordinator. `simulated_cohort_sites` makes the logs from the
simulator: a curriculum cohort trains the coordinator's first Main Brain (in memory: the
coordinator stores the model, never the curriculum's rows), the rest is split across sites.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aivo.brain.config import BrainConfig
from aivo.brain.train import train_main_brain
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.data.schema import InteractionLog
from aivo.data.simulator import SimulatorConfig, simulate_cohort
from aivo.data.splits import split_learner_ids
from aivo.errors import ConfigError
from aivo.services.clones import provision_clones
from aivo.registry import Registry, get_active_main_version, import_interactions, list_learners, open_registry
from aivo.services.federation import enroll_site
from aivo.brain.versions import register_brain
from aivo.services.site import install_version
from aivo.services.site_identity import init_site, settings_for_site

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltSite:
    name: str
    home: Path
    learners: int
    interactions: int


def build_sites(*, coordinator: Registry, site_logs: Sequence[InteractionLog], sites_dir: Path,
                names: Sequence[str] | None = None, actor: str = "aivo federation",
                clock: Clock = SYSTEM_CLOCK) -> list[BuiltSite]:
    """One site home per log under `sites_dir` (see the module doc); the coordinator must have an
    active Main Brain (the sites install it in their first round). Existing homes are refused."""
    names = list(names or [f"site-{i + 1}" for i in range(len(site_logs))])
    if len(names) != len(site_logs):
        raise ConfigError("one name per site log")
    with coordinator.session(read_only=True) as session:
        active = get_active_main_version(session=session)
    if active is None:
        raise ConfigError("the coordinator has no active Main Brain: train or register one first")
    built = []
    for name, site_log in zip(names, site_logs):
        home = Path(sites_dir) / name
        if (home / "site").exists():
            raise ConfigError(f"{home} is a site home already")
        settings = Settings(home=home, database_url=None, artifact_url=None, num_threads=1)
        created = init_site(settings=settings, name=name)
        site_settings = settings_for_site(home)
        registry = open_registry(site_settings)
        with registry.session() as session:
            import_interactions(session=session, log=site_log, secret_key=site_settings.resolved_secret_key(),
                                clock=clock)
        _install_active(coordinator, registry, actor, clock)
        with registry.session(read_only=True) as session:
            pseudonyms = [r.learner_id for r in list_learners(session=session, limit=10_000_000)]
        provision_clones(registry=registry, settings=site_settings, learner_ids=pseudonyms, clock=clock)
        registry.engine.dispose()
        enroll_site(registry=coordinator, name=name, public_key=created.public_key_text, actor=actor, clock=clock)
        built.append(BuiltSite(name, home.resolve(), len(pseudonyms), site_log.num_interactions))
    return built


def _install_active(coordinator: Registry, site: Registry, actor: str, clock: Clock) -> None:
    """Give a new site the coordinator's active version (clones are made against it); a real
    site gets it in its first round instead (`query.install`)."""
    with coordinator.session(read_only=True) as session:
        active = get_active_main_version(session=session)
    data = coordinator.store.get_bytes(active.artifact_sha256)
    install_version(registry=site, version=active.version, sha256=active.artifact_sha256, artifact=data, clock=clock)


def split_by_skill(log: InteractionLog, num_sites: int, *, seed: int = 0) -> list[list[str]]:
    """Heterogeneous sites: each learner goes to the site of the skill it practised most, skills
    dealt to sites so that sites get similar numbers of learners (a school per curriculum)."""
    frame = log.frame
    skill = frame["skill_ids"].astype(str).str.split(";").str[0]
    main = skill.groupby(frame["learner_id"]).agg(lambda s: s.value_counts().index[0])
    counts = main.value_counts()  # learners per main skill, largest first
    rng = np.random.default_rng(seed)
    order = list(counts.index)
    rng.shuffle(order)
    order.sort(key=lambda k: -counts[k])
    load = np.zeros(num_sites)
    site_of_skill = {}
    for key in order:  # largest skills first, each to the lightest site
        target = int(np.argmin(load))
        site_of_skill[key] = target
        load[target] += counts[key]
    groups: list[list[str]] = [[] for _ in range(num_sites)]
    for learner, key in main.items():
        groups[site_of_skill[key]].append(str(learner))
    return groups


def split_at_random(learners: Sequence[str], num_sites: int, *, seed: int = 0) -> list[list[str]]:
    ids = np.array(sorted(map(str, learners)), dtype=object)
    np.random.default_rng(seed).shuffle(ids)
    return [list(part) for part in np.array_split(ids, num_sites)]


@dataclass(frozen=True)
class SimulatedFederation:
    sites: list[BuiltSite]
    version: str
    curriculum_learners: int


def simulated_cohort_sites(*, coordinator: Registry, sites_dir: Path, num_sites: int, learners_per_site: int,
                           interactions_per_learner: int = 60, seed: int = 0, split: str = "random",
                           brain_config: BrainConfig | None = None, actor: str = "aivo federation") -> SimulatedFederation:
    """A simulated federation: sites from the simulator, and (when the coordinator has none) a
    first Main Brain trained on a separate curriculum cohort (a quarter as many learners as
    the sites together, at least 50)."""
    if num_sites < 1 or learners_per_site < 1:
        raise ConfigError("a simulated federation needs at least one site with at least one learner")
    if split not in ("random", "skills"):
        raise ConfigError(f"split must be 'random' or 'skills', got {split!r}")
    curriculum = max(50, num_sites * learners_per_site // 4)
    cohort = simulate_cohort(config=SimulatorConfig(num_learners=num_sites * learners_per_site + curriculum,
                                                    interactions_per_learner=interactions_per_learner), seed=seed)
    learners = list(dict.fromkeys(cohort.log.frame["learner_id"].astype(str)))
    central, site_learners = learners[:curriculum], learners[curriculum:]
    with coordinator.session(read_only=True) as session:
        active = get_active_main_version(session=session)
    if active is None:
        train_ids, val_ids, _ = split_learner_ids(central, fractions=(0.8, 0.2, 0.0), seed=seed)
        config = brain_config or BrainConfig(max_epochs=3)
        result = train_main_brain(train=cohort.log.select_learners(train_ids),
                                  validation=cohort.log.select_learners(val_ids), config=config, seed=seed)
        active = register_brain(registry=coordinator, brain=result.brain, data_hash=None, promote=True, actor=actor,
                                reason="first Main Brain of the federation (curriculum cohort)",
                                training_metrics={"validation_auc": result.validation.auc})
    site_log = cohort.log.select_learners(site_learners)
    groups = (split_by_skill(site_log, num_sites, seed=seed) if split == "skills"
              else split_at_random(site_learners, num_sites, seed=seed))
    sites = build_sites(coordinator=coordinator, site_logs=[site_log.select_learners(g) for g in groups],
                        sites_dir=sites_dir, actor=actor)
    return SimulatedFederation(sites=sites, version=active.version, curriculum_learners=curriculum)



def existing_site_homes(folder: Path) -> list[Path]:
    """Site homes (initialized by `aivo site init`) directly under `folder`, by name."""
    folder = Path(folder)
    if not folder.exists():
        return []
    return sorted(p.resolve() for p in folder.iterdir() if (p / "site" / "site.env").exists())
