"""Job kinds backed by issue 4's services: a learner's clone (local training) and federated
aggregation. Each imports its service when a worker asks whether it can run it; in a build
without the service the kind is unavailable: its jobs are recorded and stay queued (no worker
claims them) until a worker that has it appears.

- learner_model: `aivo.personalization.service.train_learner` on the learner's own interactions;
  a learner without a clone is cloned first (`aivo.personalization.clone.clone_learner`).
- federated: `aivo.federated.service.run_aggregation` with `AggregationOptions.from_settings`
  plus the job's `config` (strategy, min_learners, ...); too few eligible learners is a
  successful job whose result says "skipped".
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from aivo.config import Settings
from aivo.errors import DataError
from aivo.training.context import JobContext, JobOutcome
from aivo.training.kinds import JobKind, register_kind

log = logging.getLogger(__name__)


def _importable(*modules: str) -> bool:
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError:
        return False
    return True


class LearnerModelKind(JobKind):
    name = "learner_model"
    needs_learner = True
    modules = ("aivo.personalization.service", "aivo.personalization.clone")

    def available(self) -> bool:
        return _importable(*self.modules)

    def unavailable_reason(self) -> str:
        return "local training (aivo.personalization) is not installed: learner_model jobs wait in the queue"

    def validate(self, ctx: JobContext) -> dict[str, Any]:
        if ctx.job.learner_id is None:
            raise DataError("this learner_model job has no learner any more (erased?)")
        return {}

    def run(self, ctx: JobContext) -> JobOutcome:
        from aivo.personalization.clone import clone_learner
        from aivo.personalization.service import train_learner
        from aivo.registry import get_learner_model
        from aivo.errors import NotFoundError

        learner_id = ctx.job.learner_id
        with ctx.registry.session(read_only=True) as session:
            try:
                get_learner_model(session=session, learner_id=learner_id)
                cloned = False
            except NotFoundError:
                cloned = True
        if cloned:
            ctx.report("cloning", 0.1, "the learner has no clone yet: cloning the active Main Brain")
            clone_learner(registry=ctx.registry, settings=ctx.settings, learner_id=learner_id,
                          tenant=ctx.job.tenant or "default", clock=ctx.clock)
        ctx.report("running", 0.3, "local training on the learner's own interactions")
        report = train_learner(registry=ctx.registry, settings=ctx.settings, learner_id=learner_id, clock=ctx.clock)
        return JobOutcome(result={"cloned": cloned, **report.to_dict()})


class FederatedKind(JobKind):
    name = "federated"
    modules = ("aivo.federated.service",)

    def available(self) -> bool:
        return _importable(*self.modules)

    def unavailable_reason(self) -> str:
        return "federated aggregation (aivo.federated) is not installed: federated jobs wait in the queue"

    def check_config(self, *, config: dict[str, Any], settings: Settings) -> None:
        self._options(config, settings)

    def _options(self, config: dict[str, Any], settings: Settings):
        from aivo.errors import AivoError
        from aivo.federated.service import AggregationOptions

        if "dry_run" in config:
            raise DataError("federated jobs always apply their round; use `aivo aggregate --dry-run` to preview")
        try:
            return AggregationOptions.from_settings(settings, **config)
        except TypeError as exc:
            raise DataError(f"invalid federated config: {exc}") from None
        except AivoError as exc:
            raise DataError(exc.message) from None

    def run(self, ctx: JobContext) -> JobOutcome:
        from aivo.federated.service import run_aggregation

        ctx.report("running", 0.1, "federated aggregation round")
        report = run_aggregation(registry=ctx.registry, options=self._options(ctx.job.config, ctx.settings),
                                 actor=f"trainer-job-{ctx.job.id}", clock=ctx.clock)
        return JobOutcome(result=report.to_dict())


register_kind(LearnerModelKind())
register_kind(FederatedKind())
