"""The dashboard's learners: find a learner by the id the school uses (pseudonymized here, never
stored or logged), list the learners a key may see, and a learner's page: predicted mastery per
skill over time, what to do next and why, the clone and how it compares with the main model on
the learner's held-out interactions, and the privacy spent. Export and erasure are audited.

Who sees whom is decided by the one access rule (aivo.services.api_keys.learner_for_key): a teacher
key sees its class list only; admin and service keys their tenant; export and erasure are for
admin keys. The functions here take a pseudonym that rule already admitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa

from aivo.brain.predict import predict
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.data.schema import split_skills
from aivo.errors import AivoError
from aivo.registry import DeletionResult, Registry, delete_learner, export_learner, load_interactions, write_audit
from aivo.registry.api_keys import VerifiedKey
from aivo.registry.tables import ApiKeyLearner, Interaction, Learner, LearnerModel, PrivacyLedgerEntry
from aivo.services.learner_status import LearnerStatus, learner_status
from aivo.services.learners import pseudonym_for
from aivo.services.recommendations import policy_from_settings, recommend_with_brain, serving_brain

MAX_SKILLS_PLOTTED = 6  # the most practised skills get a line; every skill is in the table
MAX_ATTEMPTS_PLOTTED = 2000  # the learner's latest attempts


@dataclass(frozen=True)
class LearnerRow:
    pseudonym: str
    created_at: datetime
    interactions: int
    last_interaction_at: datetime | None
    clone_status: str | None  # pending | active | fallback | inactive; None: no clone
    epsilon: float | None  # user-level, from the ledger
    unbounded: bool  # took part in a round without DP


def find_pseudonym(*, settings: Settings, raw_id: str) -> str:
    """The pseudonym of the id a school system uses (DataError for an empty id)."""
    return pseudonym_for(settings=settings, learner_id=raw_id.strip() if isinstance(raw_id, str) else raw_id)


def list_learner_rows(*, registry: Registry, key: VerifiedKey, limit: int = 50, offset: int = 0,
                      ) -> tuple[list[LearnerRow], int]:
    """The learners this key may see (a teacher: its class list; others: the key's tenant),
    oldest first, and how many there are."""
    counts = (sa.select(Interaction.learner_id, sa.func.count().label("n"),
                        sa.func.max(Interaction.timestamp).label("last"))
              .group_by(Interaction.learner_id).subquery())
    clone = (sa.select(LearnerModel.learner_id, LearnerModel.status)
             .where(LearnerModel.kind == "brain").subquery())
    ledger = (sa.select(PrivacyLedgerEntry.learner_id, PrivacyLedgerEntry.epsilon,
                        PrivacyLedgerEntry.non_private_rounds).where(PrivacyLedgerEntry.kind == "brain").subquery())
    scope = [Learner.tenant == key.tenant]
    if key.role == "teacher":
        scope.append(Learner.id.in_(sa.select(ApiKeyLearner.learner_id).where(ApiKeyLearner.api_key_id == key.pk)))
    stmt = (sa.select(Learner.pseudonym, Learner.created_at, counts.c.n, counts.c.last, clone.c.status,
                      ledger.c.epsilon, ledger.c.non_private_rounds)
            .outerjoin(counts, counts.c.learner_id == Learner.id).outerjoin(clone, clone.c.learner_id == Learner.id)
            .outerjoin(ledger, ledger.c.learner_id == Learner.id)
            .where(*scope).order_by(Learner.id).limit(limit).offset(offset))
    with registry.session(read_only=True) as session:
        total = int(session.scalar(sa.select(sa.func.count()).select_from(Learner).where(*scope)) or 0)
        rows = [LearnerRow(pseudonym=p, created_at=c, interactions=int(n or 0), last_interaction_at=last,
                           clone_status=status, epsilon=None if eps is None or not math.isfinite(eps) else float(eps),
                           unbounded=bool(non_private))
                for p, c, n, last, status, eps, non_private in session.execute(stmt)]
    return rows, total


@dataclass(frozen=True)
class MasteryPoint:
    at: datetime | None  # the attempt's timestamp (None when the data has none)
    order: int  # the attempt's position in the learner's history
    p_correct: float  # the model's predicted P(correct) for this attempt, from the attempts before it
    correct: int  # what the learner answered


@dataclass(frozen=True)
class LearnerPage:
    pseudonym: str
    status: LearnerStatus
    mastery_over_time: dict[str, list[MasteryPoint]]  # skill -> points, oldest first (most practised skills)
    mastery_now: dict[str, float]  # skill -> predicted mastery now (mean P(correct) over its items)
    skills: list[dict[str, Any]]  # per practised skill: decision, mastery, attempts, recent accuracy, reason
    next_items: list[dict[str, Any]]  # item, skills, predicted success, reason
    model_note: str  # which model served this (clone or main) or why nothing could be computed
    clone: dict[str, Any] = field(default_factory=dict)  # status, source version, held-out comparison
    privacy: dict[str, Any] = field(default_factory=dict)


def _mastery_over_time(brain, history) -> dict[str, list[MasteryPoint]]:
    frame = history.frame
    if frame.empty:
        return {}
    prob = predict(brain=brain, log=history)
    skills_of = [list(dict.fromkeys(split_skills(s))) for s in frame["skill_ids"]]  # each skill once
    counts: dict[str, int] = {}
    for skills in skills_of:
        for skill in skills:
            counts[skill] = counts.get(skill, 0) + 1
    chosen = sorted(counts, key=lambda s: (-counts[s], s))[:MAX_SKILLS_PLOTTED]
    stamps = frame["timestamp"] if "timestamp" in frame.columns else None
    start = max(0, len(frame) - MAX_ATTEMPTS_PLOTTED)
    out: dict[str, list[MasteryPoint]] = {s: [] for s in chosen}
    for i in range(start, len(frame)):
        if np.isnan(prob[i]):
            continue  # a learner's first attempt has no context to predict from
        at = None
        if stamps is not None and stamps.iloc[i] is not None and not _is_nat(stamps.iloc[i]):
            at = stamps.iloc[i].to_pydatetime()
        for skill in skills_of[i]:
            if skill in out:
                out[skill].append(MasteryPoint(at=at, order=int(frame["order"].iloc[i]), p_correct=float(prob[i]),
                                               correct=int(frame["correct"].iloc[i])))
    return {s: pts for s, pts in out.items() if pts}


def _is_nat(value: Any) -> bool:
    try:
        return bool(value != value)  # NaT and NaN are not equal to themselves
    except TypeError:
        return False


def _clone(status: LearnerStatus) -> dict[str, Any]:
    model = next((m for m in status.models if m.kind == "brain"), None)
    if model is None:
        return {}
    metrics = model.metrics or {}
    main, personal = metrics.get("holdout_main") or {}, metrics.get("holdout_personal") or {}
    comparison = [(name, main.get(name), personal.get(name)) for name in ("log_loss", "auc", "accuracy", "brier")
                  if name in main or name in personal]
    return {"status": model.status, "source_version": model.source_version, "last_trained_at": model.last_trained_at,
            "sessions": model.num_training_sessions, "holdout": comparison,
            "num_holdout": metrics.get("num_holdout"), "improvement": metrics.get("improvement"),
            "reason": metrics.get("fallback_reason") or "",
            "record_level_epsilon": model.record_level_epsilon}


def learner_page(*, registry: Registry, settings: Settings, pseudonym: str, clock: Clock = SYSTEM_CLOCK) -> LearnerPage:
    """Everything the learner page shows. NotFoundError for an unknown learner."""
    status = learner_status(registry=registry, settings=settings, learner_id=pseudonym)
    with registry.session(read_only=True) as session:
        history = load_interactions(session=session, learner_ids=[pseudonym]) if status.num_interactions else None
    over_time: dict[str, list[MasteryPoint]] = {}
    mastery_now: dict[str, float] = {}
    skills: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    note = ""
    try:
        brain = serving_brain(registry=registry, learner_id=pseudonym)
        clone = next((m for m in status.models if m.kind == "brain"), None)
        note = ("the learner's clone (personal parameters on " + clone.source_version + ")"
                if clone is not None and clone.status == "active" else "the active Main Brain")
        if history is not None:
            over_time = _mastery_over_time(brain, history)
            rec = recommend_with_brain(brain=brain, learner_id=pseudonym, history=history,
                                       policy=policy_from_settings(settings), now=clock.now(),
                                       policy_name=settings.recommendation_policy)
            mastery_now = dict(rec.mastery)
            skills = [vars(d) for d in rec.skills]
            items = [vars(i) for i in rec.next_items]
    except AivoError as exc:  # no active Main Brain yet, or its artifact is unreadable: say so
        note = exc.message
    return LearnerPage(pseudonym=pseudonym, status=status, mastery_over_time=over_time, mastery_now=mastery_now,
                       skills=skills, next_items=items, model_note=note, clone=_clone(status),
                       privacy=dict(status.privacy))


def export_learner_data(*, registry: Registry, key: VerifiedKey, pseudonym: str, actor: str,
                        clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """Everything held about the learner (format aivo.learner-export/1). Audited: who exported, and
    the tenant and row counts (never the pseudonym)."""

    def work(session) -> dict[str, Any]:
        document = export_learner(session=session, store=registry.store, learner_id=pseudonym, clock=clock)
        tables = document.get("data") or {}
        write_audit(session=session, actor=actor, action="learner.export", target=f"tenant:{key.tenant}",
                    details={"rows": {name: len(rows) for name, rows in tables.items() if isinstance(rows, list)}},
                    clock=clock)
        return document

    return registry.run(work)


def erase_learner(*, registry: Registry, pseudonym: str, actor: str, reason: str,
                  clock: Clock = SYSTEM_CLOCK) -> DeletionResult:
    """Delete everything held about the learner (interactions, models, sessions, ledger,
    artifacts). Audited by the registry (counts and tenant, never the pseudonym)."""
    return registry.run(lambda session: delete_learner(session=session, store=registry.store, learner_id=pseudonym,
                                                       actor=actor, reason=reason, clock=clock))
