"""Job kinds backed by issue 4's services: a learner's clone (local training) and federated
aggregation. Each looks its service function up when a worker asks whether it can run it; while
the function is not installed, the kind is unavailable: jobs of that kind are recorded and stay
queued (no worker claims them), and run once a build that has the service is deployed.

Service functions looked up (keyword arguments, as the rest of AIVO):
- learner_model: `aivo.personalization.service.train_learner(registry=, settings=, learner_id=,
  should_stop=, clock=)` -> an object with `to_dict()` (the training session's summary);
- federated: `aivo.federated.service.run_aggregation(registry=, settings=, dry_run=False,
  clock=)` -> an object with `to_dict()`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

from aivo.training.context import JobContext, JobOutcome
from aivo.training.kinds import JobKind, register_kind

log = logging.getLogger(__name__)


def find_service(module: str, function: str) -> Callable[..., Any] | None:
    try:
        found = getattr(importlib.import_module(module), function, None)
    except ImportError:
        return None
    return found if callable(found) else None


def _call(function: Callable[..., Any], **candidates: Any) -> Any:
    """Call with the keyword arguments the function accepts (optional ones it lacks are dropped)."""
    parameters = inspect.signature(function).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return function(**{k: v for k, v in candidates.items() if accepts_any or k in parameters})


def _as_dict(value: Any) -> dict[str, Any]:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, dict):
        return value
    return {"result": repr(value)}


class ServiceKind(JobKind):
    module: str
    function: str

    def service(self) -> Callable[..., Any] | None:
        return find_service(self.module, self.function)

    def available(self) -> bool:
        return self.service() is not None

    def unavailable_reason(self) -> str:
        return (f"{self.module}.{self.function} is not installed in this build: {self.name} jobs are recorded "
                "and wait in the queue")


class LearnerModelKind(ServiceKind):
    name = "learner_model"
    needs_learner = True
    module = "aivo.personalization.service"
    function = "train_learner"

    def run(self, ctx: JobContext) -> JobOutcome:
        if ctx.job.learner_id is None:
            from aivo.errors import DataError

            raise DataError("this learner_model job has no learner (it was erased?)")
        ctx.report("running", 0.1, "local training on the learner's own interactions")
        result = _call(self.service(), registry=ctx.registry, settings=ctx.settings, learner_id=ctx.job.learner_id,
                       should_stop=ctx.should_stop, clock=ctx.clock)
        return JobOutcome(result=_as_dict(result))


class FederatedKind(ServiceKind):
    name = "federated"
    module = "aivo.federated.service"
    function = "run_aggregation"

    def run(self, ctx: JobContext) -> JobOutcome:
        ctx.report("running", 0.1, "federated aggregation round")
        result = _call(self.service(), registry=ctx.registry, settings=ctx.settings, dry_run=False, clock=ctx.clock)
        return JobOutcome(result=_as_dict(result))


register_kind(LearnerModelKind())
register_kind(FederatedKind())
