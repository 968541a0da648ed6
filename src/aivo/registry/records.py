"""What registry functions return: frozen dataclasses, detached from any session.

Each has `to_dict()` (JSON-ready: datetimes as ISO strings) for the CLI and the API.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class Record:
    """Base of the frozen dataclasses that repository and service functions return: `to_dict()`
    gives a JSON-ready dict (datetimes as ISO strings) for the CLI and the API."""

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True)
class MainVersionRecord(Record):
    id: int
    version: str
    status: str  # candidate | active | archived
    architecture: dict[str, Any]
    training_metrics: dict[str, Any]
    data_hash: str | None
    parent_version: str | None
    artifact_sha256: str
    artifact_size: int
    details: dict[str, Any]
    created_by: str | None
    created_at: datetime
    activated_at: datetime | None


@dataclass(frozen=True)
class LearnerRecord(Record):
    learner_id: str  # the pseudonym
    tenant: str
    created_at: datetime


@dataclass(frozen=True)
class LearnerModelRecord(Record):
    id: int
    learner_id: str
    tenant: str
    kind: str
    source_version: str
    artifact_sha256: str | None
    status: str  # pending | active | fallback | inactive
    metrics: dict[str, Any]
    performance: float | None
    last_trained_at: datetime | None
    details: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class TrainingSessionRecord(Record):
    id: int
    learner_model_id: int
    main_version: str
    epochs: int
    batch_size: int
    samples: int
    final_loss: float | None
    final_accuracy: float | None
    dp: dict[str, Any]
    epsilon_spent: float | None
    contributed: bool
    federated_update_id: int | None
    artifact_sha256: str | None
    update_artifact_sha256: str | None
    metrics: dict[str, Any]
    details: dict[str, Any]
    trained_at: datetime


@dataclass(frozen=True)
class FederatedUpdateRecord(Record):
    id: int
    version_before: str
    version_after: str | None
    strategy: str
    num_contributors: int
    metrics_before: dict[str, Any]
    metrics_after: dict[str, Any]
    improvement: float | None
    privacy: dict[str, Any]
    status: str  # applied | rejected | failed
    details: dict[str, Any]
    created_at: datetime


class EligibleLearner(NamedTuple):
    """A learner whose latest training is recent and not yet aggregated. A NamedTuple, not a
    dataclass: eligibility returns tens of thousands of these, and tuples build ~5x faster."""

    learner_id: str
    learner_model_id: int
    training_session_id: int  # the latest uncontributed session
    main_version: str  # the version that session trained against
    trained_at: datetime
    samples: int
    update_artifact_sha256: str | None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(self._asdict())


@dataclass(frozen=True)
class RegistryStatistics(Record):
    total_main_versions: int
    active_main_version: str | None
    total_learners: int
    total_learner_models: int
    active_learner_models: int
    total_federated_updates: int
    total_training_sessions: int
    pending_training_sessions: int  # not yet contributed to a federated update
    average_performance: float | None  # mean `performance` of active learner models


@dataclass(frozen=True)
class LearnerModelHistory(Record):
    model: LearnerModelRecord
    sessions: list[TrainingSessionRecord] = field(default_factory=list)  # oldest first


@dataclass(frozen=True)
class AuditRecord(Record):
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    reason: str
    details: dict[str, Any]
