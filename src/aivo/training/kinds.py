"""Job kinds: what a trainer job of each kind checks, runs, evaluates and promotes.

Kinds register through `register_kind`, which rejects duplicate names; `get_kind` rejects
unknown ones. A kind may be unavailable in a build (issue 4's local training or federated
service not installed): workers claim only the kinds they can run, so such jobs wait, recorded
and queued, until a worker that can run them appears.

- `main_brain`: the continuous-training pipeline (`aivo.training.pipeline`).
- `evaluation`: re-runs the evaluation harness on another job's candidate (POST .../evaluate).
- `learner_model`: one learner's clone (issue 4's local training), see `aivo.training.integrations`.
- `federated`: a federated aggregation round (issue 4's aggregation service).
"""

from __future__ import annotations

import logging
from dataclasses import fields
from datetime import datetime
from typing import Any, ClassVar

from aivo.config import Settings
from aivo.errors import AivoError, ConflictError, DataError
from aivo.registry import Registry
from aivo.training.context import JobContext, JobOutcome
from aivo.training.harness import EvaluationReport, HarnessPolicy, evaluate_brain_candidate
from aivo.training.jobs import TrainerJobRecord
from aivo.training.pipeline import PipelineConfig, collect_interactions, run_pipeline, scrub_log
from aivo.training.splits import stable_split

log = logging.getLogger(__name__)


class JobKind:
    name: ClassVar[str]
    model_kind: ClassVar[str | None] = None  # harness kind (main_brain | tutor), None: no harness
    needs_learner: ClassVar[bool] = False

    def available(self) -> bool:
        return True

    def unavailable_reason(self) -> str:
        return ""

    def check_config(self, *, config: dict[str, Any], settings: Settings) -> None:
        """Refuse a bad job at submission (DataError -> 422)."""
        if config:
            raise DataError(f"{self.name} jobs take no config, got {', '.join(sorted(config))}")

    def validate(self, ctx: JobContext) -> dict[str, Any]:
        """The `validating` stage: check that the job can run (data present, model there)."""
        return {}

    def run(self, ctx: JobContext) -> JobOutcome:
        raise NotImplementedError

    def evaluate(self, *, job: TrainerJobRecord, registry: Registry, settings: Settings,
                 policy: HarnessPolicy) -> EvaluationReport:
        raise ConflictError(f"{self.name} jobs have no evaluation harness")

    def promote(self, *, job: TrainerJobRecord, registry: Registry, actor: str, reason: str, clock) -> str:
        raise ConflictError(f"{self.name} jobs produce nothing to promote")


_KINDS: dict[str, JobKind] = {}


def register_kind(kind: JobKind) -> JobKind:
    if not getattr(kind, "name", None):
        raise ValueError("a job kind needs a name")
    if kind.name in _KINDS:
        raise ValueError(f"job kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise DataError(f"unknown job kind {name!r}; known: {', '.join(sorted(_KINDS))}") from None


def kind_names() -> tuple[str, ...]:
    return tuple(sorted(_KINDS))


def available_kinds() -> tuple[str, ...]:
    return tuple(sorted(name for name, kind in _KINDS.items() if kind.available()))


# --- the Main Brain --------------------------------------------------------------------------

_PIPELINE_KEYS = {f.name for f in fields(PipelineConfig)} - {"harness"}


def _parse_time(value: Any, name: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise DataError(f"config.{name} must be an ISO 8601 time, got {value!r}") from None
    if parsed.tzinfo is None:
        raise DataError(f"config.{name} needs a timezone (e.g. 2026-01-01T00:00:00Z)")
    return parsed


def pipeline_config(*, config: dict[str, Any], policy: dict[str, Any], settings: Settings) -> PipelineConfig:
    unknown = sorted(set(config) - _PIPELINE_KEYS)
    if unknown:
        raise DataError(f"unknown main_brain config key(s): {', '.join(unknown)}; "
                        f"known: {', '.join(sorted(_PIPELINE_KEYS))}")
    values = dict(config)
    for name in ("since", "until"):
        values[name] = _parse_time(values.get(name), name)
    if "fractions" in values:
        values["fractions"] = tuple(values["fractions"])
    try:
        result = PipelineConfig.from_settings(settings, harness=dict(policy or {}), **values)
        result.brain_config(settings)
    except (TypeError, ValueError) as exc:
        raise DataError(f"invalid main_brain config: {exc}") from None
    except AivoError as exc:  # ConfigError from the dataclasses: here it is the job's config, so a 422
        raise DataError(exc.message) from None
    return result


class MainBrainKind(JobKind):
    name = "main_brain"
    model_kind = "main_brain"

    def check_config(self, *, config: dict[str, Any], settings: Settings) -> None:
        pipeline_config(config=config, policy={}, settings=settings)

    def validate(self, ctx: JobContext) -> dict[str, Any]:
        config = pipeline_config(config=ctx.job.config, policy=ctx.job.policy, settings=ctx.settings)
        data = collect_interactions(registry=ctx.registry, config=config)
        if data.num_learners < 3:
            raise DataError(f"the selected data holds {data.num_learners} learner(s); at least 3 are needed "
                            "for a train/validation/test split")
        return {"interactions": data.num_interactions, "learners": data.num_learners}

    def run(self, ctx: JobContext) -> JobOutcome:
        config = pipeline_config(config=ctx.job.config, policy=ctx.job.policy, settings=ctx.settings)
        report = run_pipeline(registry=ctx.registry, settings=ctx.settings, config=config,
                              trigger=ctx.job.reason or f"trainer job {ctx.job.id}",
                              actor=f"trainer-job-{ctx.job.id}", job_id=ctx.job.id, should_stop=ctx.should_stop,
                              report=ctx.report, clock=ctx.clock)
        evaluation = report.evaluation or {}
        return JobOutcome(result=report.to_dict(), candidate_version=report.candidate_version,
                          evaluation=evaluation, evaluation_passed=evaluation.get("passed"),
                          promoted_version=report.candidate_version if report.promoted else None)

    def evaluate(self, *, job: TrainerJobRecord, registry: Registry, settings: Settings,
                 policy: HarnessPolicy) -> EvaluationReport:
        """The candidate on the held-out learners of the job's data selection, rebuilt from the
        stable split: learners the candidate trained on never reach it, new learners may."""
        from aivo.brain.versions import load_main_brain

        if not job.candidate_version:
            raise ConflictError(f"job {job.id} has no candidate version to evaluate")
        config = pipeline_config(config=job.config, policy=job.policy, settings=settings)
        data, _ = scrub_log(collect_interactions(registry=registry, config=config), names=settings.pii_names)
        test = stable_split(data, fractions=config.fractions, salt=config.split_salt).test
        brain = load_main_brain(registry=registry, version=job.candidate_version).brain
        return evaluate_brain_candidate(brain=brain, test=test, policy=policy,
                                        details={"candidate_version": job.candidate_version,
                                                 "data_hash": data.data_hash(),
                                                 "same_data_as_training": data.data_hash() == job.result.get("data_hash")})

    def promote(self, *, job: TrainerJobRecord, registry: Registry, actor: str, reason: str, clock) -> str:
        from aivo.registry import promote_main_version

        with registry.session() as session:
            record = promote_main_version(session=session, version=job.candidate_version, actor=actor, reason=reason,
                                          clock=clock)
        return record.version


# --- evaluation of another job's candidate -----------------------------------------------------

class EvaluationKind(JobKind):
    name = "evaluation"

    def check_config(self, *, config: dict[str, Any], settings: Settings) -> None:
        return None

    def run(self, ctx: JobContext) -> JobOutcome:
        from aivo.training.jobs import get_job, update_job_fields

        with ctx.registry.session(read_only=True) as session:
            parent = get_job(session=session, job_id=ctx.job.parent_job_id)
        kind = get_kind(parent.kind)
        policy = HarnessPolicy.from_mapping(ctx.job.policy or parent.policy, model_kind=kind.model_kind)
        ctx.report("evaluating", 0.1, f"evaluating {parent.candidate_version} (job {parent.id})")
        report = kind.evaluate(job=parent, registry=ctx.registry, settings=ctx.settings, policy=policy)
        if ctx.should_stop():  # the outcome of a cancelled evaluation is not written to the parent
            from aivo.brain.train import TrainingStopped

            raise TrainingStopped("evaluation stopped")
        with ctx.registry.session() as session:
            update_job_fields(session=session, job_id=parent.id, evaluation=report.to_dict(),
                              evaluation_passed=report.passed, clock=ctx.clock)
        return JobOutcome(result={"parent_job_id": parent.id, "passed": report.passed, "summary": report.summary()},
                          evaluation=report.to_dict(), evaluation_passed=report.passed)


register_kind(MainBrainKind())
register_kind(EvaluationKind())

from aivo.training import integrations as _integrations  # noqa: E402,F401  (registers issue 4's kinds)
