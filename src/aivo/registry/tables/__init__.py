"""Every table of the registry, on one declarative `Base`. Alembic owns the database: every
change here comes with a revision in `aivo/registry/migrations/versions/` (a test compares the
two: autogenerate against the migrated database finds no difference).

Tables are defined here and nowhere else; importing this package gives the whole schema
(`metadata`), whoever imports it.

- `core`: learners, main versions, learner models, training sessions, federated updates,
  interactions, the audit log (revisions 0001, 0002);
- `api_keys`: API keys and teachers' class lists (0003);
- `privacy`: the per-learner privacy ledger (0004);
- `training`: trainer jobs, pipeline runs, scheduler runs, leases and overrides, drift
  references and reports, learner snapshots (0005);
- `tutor`: the tutor's safety alerts (0006);
- `federation`: the coordinator's enrolled sites and a site's round records (0007);
- `dashboard`: the dashboard's server-side sessions (0008).

Conventions other layers rely on:
- A column holding an artifact digest is named `artifact_sha256` or `*_artifact_sha256`;
  garbage collection and learner erasure find references by that name alone.
- A table holding per-learner data references `learners.id` (directly, or through
  `learner_models.id`) with ON DELETE CASCADE, so erasure and export cover it.
"""

from aivo.registry.tables.api_keys import API_KEY_ROLES, ApiKey, ApiKeyLearner
from aivo.registry.tables.base import DEFAULT_TENANT, NAMING_CONVENTION, Base
from aivo.registry.tables.core import (
    FEDERATED_STATUSES,
    LEARNER_MODEL_STATUSES,
    MAIN_STATUSES,
    AuditEntry,
    FederatedUpdate,
    Interaction,
    Learner,
    LearnerModel,
    MainModelVersion,
    TrainingSession,
)
from aivo.registry.tables.federation import SITE_ROUND_STATUSES, SITE_STATUSES, FederationSite, SiteRound
from aivo.registry.tables.privacy import PrivacyLedgerEntry
from aivo.registry.tables.training import (
    ACTIVE_JOB_STATUSES,
    JOB_STATUSES,
    OPEN_JOB_STATUSES,
    PIPELINE_STATUSES,
    SCHEDULER_RUN_STATUSES,
    DriftReference,
    DriftReport,
    LearnerSnapshot,
    PipelineRun,
    SchedulerOverride,
    SchedulerRun,
    ServiceLease,
    TrainerJob,
)
from aivo.registry.tables.tutor import SafetyAlert
from aivo.registry.tables.dashboard import DashboardSession

metadata = Base.metadata

__all__ = [
    "ACTIVE_JOB_STATUSES", "API_KEY_ROLES", "DEFAULT_TENANT", "FEDERATED_STATUSES", "JOB_STATUSES",
    "LEARNER_MODEL_STATUSES", "MAIN_STATUSES", "NAMING_CONVENTION", "OPEN_JOB_STATUSES", "PIPELINE_STATUSES",
    "SCHEDULER_RUN_STATUSES", "SITE_ROUND_STATUSES", "SITE_STATUSES", "ApiKey", "ApiKeyLearner", "AuditEntry", "Base", "DashboardSession", "DriftReference", "DriftReport",
    "FederatedUpdate", "FederationSite", "Interaction", "Learner", "LearnerModel", "LearnerSnapshot", "MainModelVersion",
    "PipelineRun", "PrivacyLedgerEntry", "SafetyAlert", "SchedulerOverride", "SchedulerRun", "ServiceLease", "SiteRound", "TrainerJob",
    "TrainingSession", "metadata",
]
