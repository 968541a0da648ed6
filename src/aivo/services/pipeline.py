"""The continuous-training pipeline of the Main Brain: one front door, `run_pipeline`.

1. Collect interactions from the registry (optionally one tenant, a time range).
2. Scrub free-text PII (e-mails, phone numbers, AIVO_PII_NAMES); learner ids are pseudonyms already.
3. Split by learner 80/10/10 with a stable hash split (`aivo.training.splits`).
4. Search hyperparameters with Optuna (AIVO_HPO_TRIALS trials, AIVO_HPO_TIMEOUT_S seconds).
5. Train with early stopping on validation AUC (EARLY_STOPPING_PATIENCE).
6. Evaluate on the test learners: AUC, accuracy, F1, precision, recall, ECE, subgroup gaps.
7. Gate: promote only if the evaluation harness passes and, when a version is active, the
   relative AUC improvement over it *on the same test learners* is >= IMPROVEMENT_THRESHOLD.
8. Record everything (pipeline_runs, the version's training metrics, the drift reference of a
   promoted version) and log a summary.

Registration and loading reuse `aivo.brain.versions` (register_brain, load_main_brain).
`should_stop` (cooperative cancellation) is polled between batches and between stages; when it
fires the run is recorded as cancelled and `TrainingStopped` propagates.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from aivo.brain.catalog import item_catalog
from aivo.brain.curriculum import learn_curriculum
from aivo.brain.config import BrainConfig, config_from_settings
from aivo.brain.train import TrainingStopped
from aivo.brain.versions import load_main_brain, register_brain
from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.config import Settings
from aivo.data.privacy import free_text_columns, scrub_frame
from aivo.data.schema import TIMESTAMP_YEARS, InteractionLog
from aivo.errors import AivoError, ConfigError, ConflictError, DataError
from aivo.registry import Registry, get_active_main_version, load_interactions, promote_main_version
from aivo.services.drift import save_reference_from_data
from aivo.services.main_brain import evaluate_on
from aivo.training.context import JobContext, JobOutcome
from aivo.training.harness import EvaluationReport, HarnessPolicy, evaluate_brain_candidate
from aivo.training.hpo import Report, search_hyperparameters
from aivo.training.jobs import TrainerJobRecord
from aivo.training.kinds import JobKind
from aivo.training.runs import MAIN_BRAIN_MODEL_ID, PipelineRunRecord, finish_run, list_runs, start_run
from aivo.training.splits import stable_split
from aivo.utils import integral

log = logging.getLogger(__name__)
GATE_METRIC = "auc"


@dataclass(frozen=True)
class PipelineConfig:
    seed: int = 0
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_salt: str = "aivo"  # keep it fixed: the test learners then stay the same from run to run
    hpo_trials: int = 4
    hpo_timeout_s: float = 600.0
    improvement_threshold: float = 0.02  # relative gain in test AUC over the active version
    promote: str = "gate"  # gate | never
    brain: dict[str, Any] = field(default_factory=dict)  # BrainConfig overrides
    harness: dict[str, Any] = field(default_factory=dict)  # the job policy: thresholds, group_by, ...
    tenant: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.promote not in ("gate", "never"):
            raise ConfigError(f"promote must be 'gate' or 'never', got {self.promote!r}")
        if self.hpo_trials < 0 or self.hpo_timeout_s <= 0 or self.improvement_threshold < 0:
            raise ConfigError("hpo_trials >= 0, hpo_timeout_s > 0 and improvement_threshold >= 0 are required")
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "PipelineConfig":
        values: dict[str, Any] = {"seed": settings.seed, "hpo_trials": settings.hpo_trials,
                                  "hpo_timeout_s": settings.hpo_timeout_s,
                                  "improvement_threshold": settings.improvement_threshold}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def brain_config(self, settings: Settings) -> BrainConfig:
        try:
            return config_from_settings(settings).replace(**self.brain)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid Main Brain configuration: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("since", "until"):
            out[name] = out[name].isoformat() if out[name] else None
        return out


@dataclass
class PipelineReport:
    run_id: int
    model_id: str
    status: str  # succeeded | failed | cancelled
    candidate_version: str | None
    promoted: bool
    decision: str
    relative_improvement: float | None
    test_metrics: dict[str, Any]
    active_version: str | None
    active_test_metrics: dict[str, Any] | None
    evaluation: dict[str, Any] | None  # harness report
    search: dict[str, Any]
    training: dict[str, Any]
    split: dict[str, Any]
    data_hash: str | None
    redactions: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _within(notify: Report, start: float, end: float) -> Report:
    """A reporter mapping a stage's own 0..1 progress into [start, end] of the whole run."""
    def report(stage: str, fraction: float | None, message: str, **figures: Any) -> None:
        notify(stage, None if fraction is None else start + (end - start) * min(max(fraction, 0.0), 1.0), message,
               **figures)

    return report


def _check(should_stop: Callable[[], bool] | None, stage: str) -> None:
    if should_stop is not None and should_stop():
        raise TrainingStopped(f"stopped before {stage}")


def collect_interactions(*, registry: Registry, config: PipelineConfig) -> InteractionLog:
    with registry.session(read_only=True) as session:
        return load_interactions(session=session, tenant=config.tenant, since=config.since, until=config.until,
                                 source="registry")


def scrub_log(data: InteractionLog, *, names: str) -> tuple[InteractionLog, int]:
    """The log with PII redacted in its free-text columns, and how many cells changed."""
    columns = free_text_columns(data.frame)
    if not columns:
        return data, 0
    scrubbed = scrub_frame(data.frame, names=names, columns=columns)
    before = data.frame[columns].astype("string").fillna("")
    after = scrubbed[columns].astype("string").fillna("")
    changed = int((before != after).to_numpy().sum())
    return InteractionLog(scrubbed, data.source, data.notes), changed


def relative_improvement(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old <= 0:
        return None
    return (new - old) / old


def decide(*, harness: EvaluationReport, active_version: str | None, improvement: float | None,
           threshold: float, promote: str) -> tuple[bool, str]:
    """(promote?, why) — the gate, as a pure function."""
    if promote == "never":
        return False, "promotion not requested (registered as a candidate)"
    if not harness.passed:
        return False, f"evaluation harness failed: {harness.summary()}"
    if active_version is None:
        return True, "first Main Brain version and the evaluation harness passed"
    if improvement is None:
        return False, f"cannot compare with {active_version}: its test AUC is undefined"
    verdict = "meets" if improvement >= threshold else "is below"
    return improvement >= threshold, (f"relative test AUC improvement over {active_version} on the same test "
                                      f"learners {improvement:+.2%} {verdict} the threshold {threshold:.2%}")


def run_pipeline(*, registry: Registry, settings: Settings, config: PipelineConfig, trigger: str, actor: str,
                 job_id: int | None = None, should_stop: Callable[[], bool] | None = None,
                 report: Report | None = None, clock: Clock = SYSTEM_CLOCK) -> PipelineReport:
    """Run the whole pipeline once; the run is recorded whatever happens. Raises `TrainingStopped`
    when `should_stop` fires and `AivoError`s for data problems (both recorded first)."""
    started = time.perf_counter()
    brain_config = config.brain_config(settings)
    policy = HarnessPolicy.from_mapping(config.harness, model_kind="main_brain")
    with registry.session() as session:
        run = start_run(session=session, model_id=MAIN_BRAIN_MODEL_ID, trigger=trigger, job_id=job_id, clock=clock)
    notify = report or (lambda stage, fraction, message, **figures: None)
    log.info("=" * 60)
    log.info("STARTING AIVO MAIN BRAIN TRAINING (run %d, %s)", run.id, trigger)
    log.info("=" * 60)
    state: dict[str, Any] = {"details": {"config": config.to_dict()}}
    try:
        notify("collecting", 0.02, "loading interactions from the registry")
        data = collect_interactions(registry=registry, config=config)
        notify("scrubbing", 0.05, f"{data.num_interactions} interactions of {data.num_learners} learners")
        data, redactions = scrub_log(data, names=settings.pii_names)
        state.update(data_hash=data.data_hash(), redactions=redactions)
        split = stable_split(data, fractions=config.fractions, salt=config.split_salt)
        state["split"] = split.sizes()
        log.info("Data split - Train: %d, Val: %d, Test: %d interactions (%d / %d / %d learners)",
                 split.train.num_interactions, split.validation.num_interactions, split.test.num_interactions,
                 split.train.num_learners, split.validation.num_learners, split.test.num_learners)
        _check(should_stop, "the hyperparameter search")
        search = search_hyperparameters(train=split.train, validation=split.validation, base_config=brain_config,
                                        seed=config.seed, trials=config.hpo_trials, timeout_s=config.hpo_timeout_s,
                                        should_stop=should_stop, report=_within(notify, 0.05, 0.85))
        state["search"] = search.summary()
        result = search.best
        state["training"] = {"best_epoch": result.best_epoch, "epochs_run": len(result.history),
                             "stopped_early": result.stopped_early, "train_seconds": round(result.seconds, 2),
                             "patience": search.config.patience, "validation": result.validation.as_dict(),
                             "history": [asdict(e) for e in result.history]}
        log.info("Optimized hyperparameters: %s (validation AUC %s)",
                 ", ".join(f"{k}={v}" for k, v in search.best_params.items()) or "defaults",
                 search.best_validation_auc)
        _check(should_stop, "evaluation")
        notify("evaluating", 0.85, "evaluating on the test learners")
        brain = result.brain
        harness = evaluate_brain_candidate(brain=brain, test=split.test, policy=policy)
        test = harness.details["evaluation"]
        state["test_metrics"] = test
        with registry.session(read_only=True) as session:
            active = get_active_main_version(session=session)
        active_test = None
        if active is not None:
            active_brain = load_main_brain(registry=registry, version=active.version).brain
            active_test = evaluate_on(brain=active_brain, log=split.test,
                                      group_by=[c for c in policy.group_by if c in split.test.frame.columns]).as_dict()
        new_auc = test["metrics"][GATE_METRIC]
        old_auc = active_test["metrics"][GATE_METRIC] if active_test else None
        improvement = relative_improvement(new_auc, old_auc)
        promote, decision = decide(harness=harness, active_version=active.version if active else None,
                                   improvement=improvement, threshold=config.improvement_threshold,
                                   promote=config.promote)
        state.update(active_version=active.version if active else None, active_test_metrics=active_test,
                     relative_improvement=improvement, evaluation=harness.to_dict(), decision=decision)
        _check(should_stop, "registration")
        notify("registering", 0.95, decision)
        brain.info.update({"data_hash": data.data_hash(), "split_salt": config.split_salt,
                           "split_fractions": list(config.fractions), "split": split.sizes(),
                           "item_catalog": item_catalog(split.train),
                           "curriculum": learn_curriculum(split.train, bkt=False).to_dict(),
                           "test_metrics": test["metrics"],
                           "pipeline_run": run.id})
        metrics = {"validation": result.validation.as_dict(), "test": test, "best_epoch": result.best_epoch,
                   "train_seconds": round(result.seconds, 2), "search": search.summary(),
                   "harness": harness.to_dict(), "relative_improvement": improvement}
        record = register_brain(registry=registry, brain=brain, training_metrics=metrics, data_hash=data.data_hash(),
                                parent_version=active.version if active else None, promote=promote, actor=actor,
                                reason=decision, details={"pipeline_run": run.id, "job_id": job_id,
                                                          "trigger": trigger}, clock=clock)
        state.update(candidate_version=record.version, promoted=promote)
        if promote:
            _save_reference(registry=registry, version=record.version, brain=brain, data=data, test=split.test,
                            auc=new_auc, clock=clock)
    except TrainingStopped as exc:
        _finish(registry, run.id, "cancelled", state, clock, error=str(exc))
        log.warning("pipeline run %d cancelled: %s", run.id, exc)
        raise
    except Exception as exc:
        _finish(registry, run.id, "failed", state, clock, error=f"{type(exc).__name__}: {exc}")
        log.error("pipeline run %d failed: %s", run.id, exc)
        raise
    seconds = time.perf_counter() - started
    state["details"]["seconds"] = round(seconds, 2)
    _finish(registry, run.id, "succeeded", state, clock)
    _log_summary(state, seconds)
    return PipelineReport(run_id=run.id, model_id=MAIN_BRAIN_MODEL_ID, status="succeeded",
                          candidate_version=state["candidate_version"], promoted=state["promoted"],
                          decision=state["decision"], relative_improvement=improvement, test_metrics=test,
                          active_version=state["active_version"], active_test_metrics=active_test,
                          evaluation=state["evaluation"], search=state["search"], training=state["training"],
                          split=state["split"], data_hash=state["data_hash"], redactions=state["redactions"],
                          seconds=round(seconds, 2))


def _save_reference(*, registry: Registry, version: str, brain, data: InteractionLog, test: InteractionLog,
                    auc: float | None, clock: Clock) -> None:
    """The promoted version's drift baseline: the input mix of its whole snapshot, predictions and
    AUC on its test learners. A failure here must not undo a promotion: it is logged, and the
    drift check builds the reference itself later."""
    try:
        save_reference_from_data(registry=registry, model_id=MAIN_BRAIN_MODEL_ID, version=version, brain=brain,
                                 data=data, test=test, auc=auc, source="pipeline_test_split", clock=clock)
    except (DataError, ValueError) as exc:
        log.warning("could not store the drift reference of %s: %s", version, exc)


def _finish(registry: Registry, run_id: int, status: str, state: dict[str, Any], clock: Clock,
            error: str | None = None) -> None:
    columns = ("data_hash", "split", "search", "training", "test_metrics", "active_version", "active_test_metrics",
               "relative_improvement", "candidate_version", "promoted", "decision")
    values = {k: state[k] for k in columns if k in state}
    details = {**state.get("details", {}), "redactions": state.get("redactions"), "evaluation": state.get("evaluation")}
    with registry.session() as session:
        finish_run(session=session, run_id=run_id, status=status, clock=clock, error=error, details=details, **values)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _log_summary(state: dict[str, Any], seconds: float) -> None:
    validation = state["training"]["validation"]
    test = state["test_metrics"]["metrics"]
    log.info("=" * 60)
    log.info("AIVO MAIN BRAIN TRAINING COMPLETED")
    log.info("Training Time: %.0fs", seconds)
    log.info("Validation AUC: %s, Accuracy: %s", validation.get("auc"), _percent(validation.get("accuracy")))
    log.info("Test AUC: %s, Accuracy: %s", test.get("auc"), _percent(test.get("accuracy")))
    log.info("Candidate: %s (active before: %s)", state.get("candidate_version"), state.get("active_version"))
    log.info("Model Improved: %s (%s)", state.get("promoted"), state.get("decision"))
    log.info("=" * 60)


def recent_runs(*, registry: Registry, limit: int = 20) -> list[PipelineRunRecord]:
    """Pipeline runs, newest first (aivo pipeline runs)."""
    return registry.run(lambda session: list_runs(session=session, limit=limit), read_only=True)


# --- the `main_brain` trainer job -------------------------------------------------------------

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
    if not TIMESTAMP_YEARS[0] <= parsed.year <= TIMESTAMP_YEARS[1]:  # as every stored timestamp (issue 14)
        raise DataError(f"config.{name} must be in the years {TIMESTAMP_YEARS[0]}-{TIMESTAMP_YEARS[1]}, "
                        f"got {value!r}")
    return parsed


# A job's config arrives as free-form JSON (POST /trainer/jobs, aivo jobs create): every number is
# checked here, at submission, for its type and a sane range (issue 14: bound every integer and
# float at the edge), instead of failing the job in the worker or holding it for days. A whole
# number written as a float (12.0) is that integer, as JSON Schema's "integer" says.
_MAX_SEED = 2**32 - 1
_CONFIG_INTS = {"seed": (0, _MAX_SEED), "hpo_trials": (0, 1000)}
_CONFIG_FLOATS = {"hpo_timeout_s": (0.0, 7 * 86_400.0), "improvement_threshold": (0.0, 100.0)}
_CONFIG_TEXTS = {"promote": 16, "split_salt": 200, "tenant": 256}
# The Main Brain's size settings: upper bounds that keep one job's model within a server's memory.
_BRAIN_INT_BOUNDS = {"max_seq_len": 4096, "max_skills_per_interaction": 64, "embed_dim": 2048, "hidden_dim": 2048,
                     "num_layers": 8, "head_hidden_dim": 2048, "evidence_dim": 2048, "num_difficulty_levels": 100,
                     "batch_size": 16_384, "max_epochs": 10_000, "patience": 10_000,
                     "patience_steps": 10_000_000}


def _whole_number(value: Any, where: str, low: int, high: int) -> int:
    number = integral(value)  # 12.0 is 12, as in request bodies (one rule: aivo.utils)
    if not isinstance(number, int) or isinstance(number, bool) or not low <= number <= high:
        raise DataError(f"{where} must be a whole number from {low:,} to {high:,}, got {str(value)[:40]!r}")
    return number


def _finite_number(value: Any, where: str, low: float, high: float) -> float:
    if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
            or not low <= value <= high):
        raise DataError(f"{where} must be a number from {low:g} to {high:g}, got {str(value)[:40]!r}")
    return float(value)


def _checked_config(config: dict[str, Any]) -> dict[str, Any]:
    """The job's config with every value of the right type and in range (DataError, a 422, if not)."""
    values = dict(config)
    for name, (low, high) in _CONFIG_INTS.items():
        if values.get(name) is not None:
            values[name] = _whole_number(values[name], f"config.{name}", low, high)
    for name, (low, high) in _CONFIG_FLOATS.items():
        if values.get(name) is not None:
            values[name] = _finite_number(values[name], f"config.{name}", low, high)
    for name, longest in _CONFIG_TEXTS.items():
        value = values.get(name)
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= longest):
            raise DataError(f"config.{name} must be text of 1 to {longest} characters, got {str(value)[:40]!r}")
    if values.get("fractions") is not None:
        fractions = values["fractions"]
        if not isinstance(fractions, (list, tuple)) or len(fractions) != 3:
            raise DataError(f"config.fractions must be three numbers (train, validation, test), got "
                            f"{str(fractions)[:60]!r}")
        values["fractions"] = tuple(_finite_number(f, "config.fractions", 0.0, 1.0) for f in fractions)
        if not math.isclose(sum(values["fractions"]), 1.0, abs_tol=1e-6) or values["fractions"][0] <= 0:
            raise DataError(f"config.fractions must sum to 1 with a positive training share, got {list(fractions)}")
    brain = values.get("brain")
    if brain is not None:
        if not isinstance(brain, dict):
            raise DataError(f"config.brain must be an object of BrainConfig fields, got {str(brain)[:40]!r}")
        brain = dict(brain)
        for name, value in brain.items():
            where = f"invalid Main Brain configuration: config.brain.{name}"
            if name in _BRAIN_INT_BOUNDS:
                low = 0 if name in ("evidence_dim", "patience_steps") else 1
                brain[name] = _whole_number(value, where, low, _BRAIN_INT_BOUNDS[name])
            elif isinstance(value, float) and not math.isfinite(value):
                raise DataError(f"{where} must be finite, got {value!r}")
        values["brain"] = brain
    return values


def pipeline_config(*, config: dict[str, Any], policy: dict[str, Any], settings: Settings) -> PipelineConfig:
    unknown = sorted(set(config) - _PIPELINE_KEYS)
    if unknown:
        raise DataError(f"unknown main_brain config key(s): {', '.join(unknown)}; "
                        f"known: {', '.join(sorted(_PIPELINE_KEYS))}")
    values = _checked_config(config)
    for name in ("since", "until"):
        values[name] = _parse_time(values.get(name), name)
    try:
        result = PipelineConfig.from_settings(settings, harness=dict(policy or {}), **values)
        result.brain_config(settings)
    except (TypeError, ValueError) as exc:
        raise DataError(f"invalid main_brain config: {exc}") from None
    except AivoError as exc:  # ConfigError from the dataclasses: here it is the job's config, so a 422
        raise DataError(exc.message) from None
    return result


class MainBrainKind(JobKind):
    """The `main_brain` trainer job: one run of the pipeline."""

    name = "main_brain"
    model_kind = "main_brain"
    submittable = True

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
        with registry.session() as session:
            record = promote_main_version(session=session, version=job.candidate_version, actor=actor, reason=reason,
                                          clock=clock)
        return record.version
