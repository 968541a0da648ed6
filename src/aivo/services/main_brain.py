"""The Main Brain in the registry: register trained brains as versions, load the active one.

`load_main_brain` keeps recently loaded brains in a small in-process cache keyed by the
artifact's sha256 (an artifact never changes, so the cache needs no invalidation: promotion
simply changes which digest is active). The artifact's hash is verified when first loaded.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from aivo.brain.bundle import TrainedBrain
from aivo.brain.checkpoint import from_state, to_state
from aivo.brain.config import BrainConfig
from aivo.brain.predict import Evaluation, evaluate
from aivo.brain.train import train_main_brain
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.data.schema import InteractionLog
from aivo.data.splits import split_by_learner
from aivo.errors import DataError, NotFoundError
from aivo.registry import (
    MainVersionRecord,
    Registry,
    get_active_main_version,
    get_main_version,
    load_interactions,
    next_main_version_name,
    promote_main_version,
    register_main_version,
)

log = logging.getLogger(__name__)
_CACHE_SIZE = 4
_cache: "OrderedDict[str, TrainedBrain]" = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class LoadedBrain:
    version: MainVersionRecord
    brain: TrainedBrain


def item_catalog(log: InteractionLog) -> list[dict[str, str]]:
    """One row per item: its most frequent skill_ids, item_type, subject and grade in `log`.
    Stored with the brain so recommendations know what can be served (and to whom) without
    scanning interactions."""
    frame = log.frame
    cols = ["item_id", "skill_ids"] + [c for c in ("item_type", "subject", "grade") if c in frame.columns]
    view = frame[cols].astype("string").fillna("")
    counts = view.value_counts(sort=True).reset_index(name="n")
    first = counts.drop_duplicates("item_id", keep="first").sort_values("item_id")
    return [{c: str(row[c]) for c in cols} for _, row in first.iterrows()]


_catalogs: "OrderedDict[int, tuple[list, pd.DataFrame]]" = OrderedDict()  # id(rows) -> (rows, frame)


def catalog_frame(brain: TrainedBrain) -> pd.DataFrame:
    """The brain's item catalog as a frame (built once per catalog: serving asks for it on every
    recommendation). Treat it as read-only."""
    rows = brain.info.get("item_catalog")
    if not rows:
        raise DataError("this Main Brain carries no item catalog; retrain it with `aivo train-main`")
    with _cache_lock:
        cached = _catalogs.get(id(rows))
        if cached is not None and cached[0] is rows:  # the entry holds `rows`, so its id is not reused
            _catalogs.move_to_end(id(rows))
            return cached[1]
    frame = _build_catalog_frame(rows)
    with _cache_lock:
        _catalogs[id(rows)] = (rows, frame)
        while len(_catalogs) > _CACHE_SIZE * 2:
            _catalogs.popitem(last=False)
    return frame


def _build_catalog_frame(rows: list) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in ("item_type", "subject"):
        if column in frame.columns:
            frame[column] = frame[column].replace("", pd.NA)
    if "grade" in frame.columns:
        frame["grade"] = pd.to_numeric(frame["grade"], errors="coerce").astype("Int64")
    return frame


def architecture_of(brain: TrainedBrain) -> dict[str, Any]:
    model = brain.model
    return {"kind": "main_brain", "config": brain.config.to_dict(), "sizes": dict(model.sizes),
            "num_parameters": {"shared": model.num_parameters("embed", "encoder", "head"),
                               "personal": model.num_parameters("personal")}}


def register_brain(*, registry: Registry, brain: TrainedBrain, training_metrics: dict[str, Any],
                   data_hash: str | None, parent_version: str | None = None, promote: bool = False,
                   actor: str, reason: str, version: str | None = None, details: dict[str, Any] | None = None,
                   clock: Clock = SYSTEM_CLOCK) -> MainVersionRecord:
    """Store the brain's weights (durably, content-addressed), then register the version row,
    and promote it in the same transaction when asked."""
    tensors, metadata = to_state(brain)
    artifact = registry.store.put_tensors(tensors, metadata=metadata)
    with registry.session() as session:
        name = version or next_main_version_name(session=session)
        record = register_main_version(session=session, store=registry.store, version=name, artifact=artifact,
                                       architecture=architecture_of(brain), training_metrics=training_metrics,
                                       data_hash=data_hash, parent_version=parent_version,
                                       details=details, created_by=actor, clock=clock)
        if promote:
            record = promote_main_version(session=session, version=name, actor=actor, reason=reason, clock=clock)
    with _cache_lock:
        _remember(artifact.sha256, brain)
    log.info("registered Main Brain %s (%s)%s", record.version, artifact.sha256[:12],
             " and promoted it" if promote else "")
    return record


def _remember(digest: str, brain: TrainedBrain) -> None:
    _cache[digest] = brain
    _cache.move_to_end(digest)
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)


def load_main_brain(*, registry: Registry, version: str | None = None) -> LoadedBrain:
    """The active Main Brain (or `version`), loaded from its verified artifact."""
    with registry.session(read_only=True) as session:
        record = get_main_version(session=session, version=version) if version \
            else get_active_main_version(session=session)
    if record is None:
        raise NotFoundError("there is no active Main Brain yet: train one on the registry's interactions with "
                            "`aivo train-main` (or POST /v1/scheduler/train-main-brain)")
    with _cache_lock:
        brain = _cache.get(record.artifact_sha256)
        if brain is not None:
            _cache.move_to_end(record.artifact_sha256)
            return LoadedBrain(record, brain)
    tensors, metadata = registry.store.load_tensors(record.artifact_sha256)
    brain = from_state(tensors, metadata, source=f"main version {record.version}")
    with _cache_lock:
        _remember(record.artifact_sha256, brain)
    return LoadedBrain(record, brain)


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


@dataclass
class TrainMainReport:
    version: MainVersionRecord
    promoted: bool
    promotion_reason: str
    data_hash: str
    split: dict[str, dict[str, int]]
    best_epoch: int
    epochs_run: int
    train_seconds: float
    validation: dict
    test: dict
    active_before: str | None
    active_test: dict | None = None  # the previously active version on the same test learners
    details: dict = field(default_factory=dict)


def evaluate_on(*, brain: TrainedBrain, log: InteractionLog, group_by: Sequence[str] = ()) -> Evaluation:
    return evaluate(brain=brain, log=log, group_by=[c for c in group_by if c in log.frame.columns])


def train_main_version(*, registry: Registry, settings: Settings, config: BrainConfig, seed: int,
                       log: InteractionLog | None = None, promote: str = "if-better",
                       fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), group_by: Sequence[str] = (),
                       actor: str, progress: bool = False, clock: Clock = SYSTEM_CLOCK) -> TrainMainReport:
    """Train on `log` (default: every interaction in the registry), split 80/10/10 by learner,
    evaluate on the test learners and register the result as a new main version.

    promote: "always", "never", or "if-better" (promote when there is no active version, or when
    the new version's test AUC is higher than the active version's on the same test learners).
    The continuous-training pipeline applies the stricter IMPROVEMENT_THRESHOLD gate."""
    if promote not in ("always", "never", "if-better"):
        raise ValueError(f"promote must be always, never or if-better, got {promote!r}")
    if log is None:
        with registry.session(read_only=True) as session:
            log = load_interactions(session=session)
        if log.num_interactions == 0:
            raise DataError("the registry holds no interactions: import some with `aivo data import FILE`")
    split = split_by_learner(log, fractions=fractions, seed=seed)
    result = train_main_brain(train=split.train, validation=split.validation, config=config, seed=seed,
                              progress=progress)
    brain = result.brain
    test = evaluate_on(brain=brain, log=split.test, group_by=group_by)
    with registry.session(read_only=True) as session:
        active = get_active_main_version(session=session)
    active_test = None
    if active is not None:
        active_test = evaluate_on(brain=load_main_brain(registry=registry).brain, log=split.test,
                                  group_by=group_by).as_dict()
    new_auc = test.metrics.auc or 0.0
    if promote == "always":
        do_promote, why = True, "promotion requested"
    elif promote == "never":
        do_promote, why = False, "promotion not requested"
    elif active is None:
        do_promote, why = True, "first Main Brain version"
    else:
        old_auc = active_test["metrics"]["auc"] or 0.0
        do_promote = new_auc > old_auc
        why = (f"test AUC {new_auc:.4f} vs active {active.version} {old_auc:.4f} on the same test learners")
    brain.info.update({"data_hash": log.data_hash(), "split_seed": seed, "split_fractions": list(fractions),
                       "split": split.sizes(), "item_catalog": item_catalog(split.train),
                       "history": [asdict(epoch) for epoch in result.history],
                       "test_metrics": test.metrics.as_dict()})
    metrics = {"validation": result.validation.as_dict(), "test": test.as_dict(), "best_epoch": result.best_epoch,
               "train_seconds": round(result.seconds, 2)}
    record = register_brain(registry=registry, brain=brain, training_metrics=metrics, data_hash=log.data_hash(),
                            parent_version=active.version if active else None, promote=do_promote, actor=actor,
                            reason=why, clock=clock)
    return TrainMainReport(version=record, promoted=do_promote, promotion_reason=why, data_hash=log.data_hash(),
                           split=split.sizes(), best_epoch=result.best_epoch, epochs_run=len(result.history),
                           train_seconds=round(result.seconds, 2), validation=result.validation.as_dict(),
                           test=test.as_dict(), active_before=active.version if active else None,
                           active_test=active_test)
