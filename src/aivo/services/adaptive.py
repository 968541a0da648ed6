"""The adaptive orchestrator: after new interactions, analyse a learner (the recommendation policy
over the serving model's predictions) and, when the picture changed significantly, ask for an
update of the learner's own model (a `learner_model` trainer job; issue 4's local training runs
it, and until that service is installed the job is recorded and waits in the queue).

A change is significant when, compared with the learner's last snapshot,
- a skill practised in both now gets an actionable decision it did not have (LEVEL_UP,
  LEVEL_DOWN or REVIEW), or
- the predicted mastery of a skill moved by at least `mastery_change` (default 0.15).
The first analysis of a learner only records a baseline. Learners are re-analysed once they have
at least `min_new_interactions` interactions more than at their last snapshot; the retraining
guards apply (one open job per learner model, MIN_TRAINING_INTERVAL_HOURS).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import sqlalchemy as sa

from aivo.brain.recommend import Recommendation
from aivo.brain.versions import load_main_brain
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.errors import DataError
from aivo.registry import Registry, load_interactions
from aivo.registry.records import Record
from aivo.registry.tables import Interaction, Learner, LearnerSnapshot
from aivo.services.recommendations import policy_from_settings, recommend_with_brain
from aivo.training.retraining import schedule_retraining
from aivo.training.runs import learner_model_id

log = logging.getLogger(__name__)
ACTIONABLE = ("LEVEL_UP", "LEVEL_DOWN", "REVIEW")


@dataclass(frozen=True)
class OrchestratorConfig:
    mastery_change: float = 0.15
    min_new_interactions: int = 5
    max_learners: int = 1000  # per check; the rest wait for the next one (oldest snapshots first)

    def __post_init__(self) -> None:
        if not 0 < self.mastery_change <= 1 or self.min_new_interactions < 1 or self.max_learners < 1:
            raise ValueError("mastery_change in (0, 1], min_new_interactions >= 1, max_learners >= 1")


@dataclass(frozen=True)
class LearnerChange(Record):
    learner_id: str
    significant: bool
    reasons: list[str]
    decisions: dict[str, str]
    mastery: dict[str, float]
    job_id: int | None = None
    job_status: str | None = None  # queued | already_training | too_soon


@dataclass(frozen=True)
class AdaptiveCheckResult(Record):
    main_version: str
    learners_checked: int
    learners_changed: int
    jobs_queued: list[int] = field(default_factory=list)
    not_queued: dict[str, int] = field(default_factory=dict)  # guard -> count
    seconds: float = 0.0


def compare_snapshots(*, old_decisions: dict[str, str], old_mastery: dict[str, float], new_decisions: dict[str, str],
                      new_mastery: dict[str, float], config: OrchestratorConfig) -> list[str]:
    """Why the new analysis differs significantly from the old one (empty: it does not). Pure."""
    reasons = []
    for skill in sorted(set(old_decisions) & set(new_decisions)):
        before, after = old_decisions[skill], new_decisions[skill]
        if before != after and after in ACTIONABLE:
            reasons.append(f"skill {skill}: {before} -> {after}")
    for skill in sorted(set(old_mastery) & set(new_mastery)):
        delta = new_mastery[skill] - old_mastery[skill]
        if abs(delta) >= config.mastery_change:
            reasons.append(f"skill {skill}: predicted mastery {old_mastery[skill]:.2f} -> {new_mastery[skill]:.2f}")
    return reasons


def _summary(recommendation: Recommendation) -> tuple[dict[str, str], dict[str, float]]:
    decisions = {d.skill_id: d.decision for d in recommendation.skills}
    mastery = {d.skill_id: float(d.mastery) for d in recommendation.skills}  # practised skills only
    return decisions, mastery


def learners_due(*, registry: Registry, config: OrchestratorConfig) -> list[tuple[int, str, int]]:
    """(learner pk, pseudonym, interaction count) of learners with enough new interactions since
    their snapshot (or none yet), oldest analysis first."""
    counts = (sa.select(Interaction.learner_id, sa.func.count().label("n"))
              .group_by(Interaction.learner_id).subquery())
    seen = sa.func.coalesce(LearnerSnapshot.interactions_seen, 0)
    stmt = (sa.select(Learner.id, Learner.pseudonym, counts.c.n)
            .join(counts, counts.c.learner_id == Learner.id)
            .outerjoin(LearnerSnapshot, LearnerSnapshot.learner_id == Learner.id)
            .where(sa.or_(LearnerSnapshot.id.is_(None), counts.c.n - seen >= config.min_new_interactions))
            .order_by(LearnerSnapshot.analysed_at.is_not(None), LearnerSnapshot.analysed_at, Learner.id)
            .limit(config.max_learners))
    with registry.session(read_only=True) as session:
        return [(pk, pseudonym, int(n)) for pk, pseudonym, n in session.execute(stmt)]


def analyze_learner(*, registry: Registry, settings: Settings, learner_pk: int, learner_id: str, interactions: int,
                    brain, main_version: str, config: OrchestratorConfig = OrchestratorConfig(),
                    schedule: bool = True, clock: Clock = SYSTEM_CLOCK) -> LearnerChange:
    """Analyse one learner, store the snapshot, and queue a learner-model job on a significant change."""
    with registry.session(read_only=True) as session:
        history = load_interactions(session=session, learner_ids=[learner_id])
        snapshot = session.scalar(sa.select(LearnerSnapshot).where(LearnerSnapshot.learner_id == learner_pk))
        old = (dict(snapshot.decisions), dict(snapshot.mastery)) if snapshot is not None else None
    recommendation = recommend_with_brain(brain=brain, learner_id=learner_id, history=history,
                                          policy=policy_from_settings(settings), now=clock.now(),
                                       policy_name=settings.recommendation_policy)
    decisions, mastery = _summary(recommendation)
    reasons = [] if old is None else compare_snapshots(old_decisions=old[0], old_mastery=old[1],
                                                       new_decisions=decisions, new_mastery=mastery, config=config)
    job_id = job_status = None
    if reasons and schedule:
        decision = schedule_retraining(registry=registry, settings=settings, model_id=learner_model_id(learner_id),
                                       reason="adaptive: " + "; ".join(reasons)[:900], priority="normal",
                                       created_by="adaptive-orchestrator", clock=clock)
        job_status = decision.status
        job_id = decision.job.id if decision.job is not None else None

    def save(session) -> None:
        row = session.scalar(sa.select(LearnerSnapshot).where(LearnerSnapshot.learner_id == learner_pk))
        if row is None:
            row = LearnerSnapshot(learner_id=learner_pk)
            session.add(row)
        row.analysed_at, row.interactions_seen, row.main_version = clock.now(), interactions, main_version
        row.decisions, row.mastery = decisions, {k: round(v, 4) for k, v in mastery.items()}
        if job_id is not None and job_status == "queued":
            row.last_job_id = job_id

    registry.run(save)
    return LearnerChange(learner_id=learner_id, significant=bool(reasons), reasons=reasons, decisions=decisions,
                         mastery=mastery, job_id=job_id, job_status=job_status)


def run_adaptive_check(*, registry: Registry, settings: Settings, config: OrchestratorConfig = OrchestratorConfig(),
                       clock: Clock = SYSTEM_CLOCK) -> AdaptiveCheckResult:
    """The scheduler's adaptive check (every AIVO_ADAPTIVE_CHECK_INTERVAL_HOURS): every learner
    with new interactions is analysed once. Raises NotFoundError when no Main Brain is active."""
    started = time.perf_counter()
    loaded = load_main_brain(registry=registry)
    changed, queued, not_queued = 0, [], {}
    due = learners_due(registry=registry, config=config)
    for pk, pseudonym, count in due:
        try:
            change = analyze_learner(registry=registry, settings=settings, learner_pk=pk, learner_id=pseudonym,
                                     interactions=count, brain=loaded.brain, main_version=loaded.version.version,
                                     config=config, clock=clock)
        except DataError as exc:  # e.g. the learner was erased meanwhile
            log.info("adaptive check skipped a learner: %s", exc.message)
            continue
        if change.significant:
            changed += 1
            if change.job_status == "queued":
                queued.append(change.job_id)
            elif change.job_status:
                not_queued[change.job_status] = not_queued.get(change.job_status, 0) + 1
    result = AdaptiveCheckResult(main_version=loaded.version.version, learners_checked=len(due),
                                 learners_changed=changed, jobs_queued=queued, not_queued=not_queued,
                                 seconds=round(time.perf_counter() - started, 3))
    log.info("adaptive check: %d learner(s) analysed, %d changed significantly, %d update job(s) queued",
             result.learners_checked, changed, len(queued))
    return result


def on_new_interactions(*, registry: Registry, settings: Settings, learner_ids: list[str],
                        config: OrchestratorConfig = OrchestratorConfig(), clock: Clock = SYSTEM_CLOCK
                        ) -> list[LearnerChange]:
    """Analyse these learners now (e.g. from a background task after ingestion), whatever their
    count of new interactions. Learners unknown to the registry are ignored."""
    loaded = load_main_brain(registry=registry)
    with registry.session(read_only=True) as session:
        rows = session.execute(sa.select(Learner.id, Learner.pseudonym, sa.func.count(Interaction.id))
                               .join(Interaction, Interaction.learner_id == Learner.id)
                               .where(Learner.pseudonym.in_(sorted(set(learner_ids))))
                               .group_by(Learner.id, Learner.pseudonym)).all()
    return [analyze_learner(registry=registry, settings=settings, learner_pk=pk, learner_id=pseudonym,
                            interactions=int(n), brain=loaded.brain, main_version=loaded.version.version,
                            config=config, clock=clock) for pk, pseudonym, n in rows]
