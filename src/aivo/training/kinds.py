"""Job kinds: the interface every kind of trainer job implements, and the registry workers and
front doors look kinds up in.

A `JobKinds` registry rejects a duplicate or nameless kind when it is built and an unknown name
when it is asked. The kinds themselves live next to the use case they run (`aivo.services.*`);
`aivo.services.jobs.JOB_KINDS` is the registry the service builds from them and hands to its
workers, so a worker runs exactly the kinds it was given.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from aivo.config import Settings
from aivo.errors import ConflictError, DataError
from aivo.registry import Registry
from aivo.training.context import JobContext, JobOutcome
from aivo.training.harness import EvaluationReport, HarnessPolicy
from aivo.training.jobs import TrainerJobRecord


class JobKind:
    """What a trainer job of one kind checks, runs, evaluates and promotes. Subclasses override
    the hooks they need; the worker's loop (claim, heartbeat, fate) is written once, in
    `aivo.training.worker`."""

    name: ClassVar[str]
    model_kind: ClassVar[str | None] = None  # harness kind (main_brain | tutor), None: no harness
    submittable: ClassVar[bool] = False  # may be queued through POST /trainer/jobs (aivo jobs create)

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


class JobKinds:
    """Kinds by name. Built once from a list of kinds; a duplicate or nameless kind is refused."""

    def __init__(self, kinds: Iterable[JobKind] = ()):
        self._kinds: dict[str, JobKind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: JobKind) -> JobKind:
        if not getattr(kind, "name", None):
            raise ValueError("a job kind needs a name")
        if kind.name in self._kinds:
            raise ValueError(f"job kind {kind.name!r} is already registered")
        self._kinds[kind.name] = kind
        return kind

    def get(self, name: str) -> JobKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise DataError(f"unknown job kind {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._kinds))

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[JobKind]:
        return iter(self._kinds[name] for name in self.names())
