"""The model registry and artifact store: AIVO's persistent state.

Front door: `open_registry(settings)` -> `Registry(engine, store)`; then repository functions
with the session injected, e.g.::

    reg = open_registry()
    with reg.session() as session:
        ref = reg.store.put_tensors(tensors, metadata=meta)      # artifact first (durable) ...
        register_main_version(session=session, store=reg.store,   # ... then the row
                              version="aivo-main-v1", artifact=ref, architecture={...})
        promote_main_version(session=session, version="aivo-main-v1", actor="me", reason="first")
"""

from aivo.registry.artifacts import ArtifactRef, ArtifactStore, StoredArtifact, decode_tensors, encode_tensors
from aivo.registry.audit import default_actor, list_audit, write_audit
from aivo.registry.connect import Registry, open_registry
from aivo.registry.data_rights import DeletionResult, delete_learner, export_learner
from aivo.registry.db import (
    dispose_engines,
    get_engine,
    make_engine,
    make_session,
    run_in_transaction,
    session_factory,
    session_scope,
)
from aivo.registry.federated import (
    get_federated_update,
    list_federated_updates,
    mark_contributed,
    record_federated_update,
)
from aivo.registry.gc import GcResult, RegistryCheck, collect_garbage, referenced_digests, verify_registry
from aivo.registry.interactions import (
    ImportResult,
    count_interactions,
    ensure_learners,
    import_interaction_file,
    import_interactions,
    load_interactions,
    load_interactions_after,
)
from aivo.registry.eligibility import get_eligible_for_aggregation
from aivo.registry.learners import (
    ensure_learner,
    get_learner,
    get_learner_model,
    learner_model_history,
    list_learner_models,
    list_learners,
    record_training_session,
    register_learner_model,
    update_learner_model,
)
from aivo.registry.migrate import check_schema, current_revision, ensure_schema, head_revision, upgrade_database
from aivo.registry.records import (
    AuditRecord,
    EligibleLearner,
    FederatedUpdateRecord,
    LearnerModelHistory,
    LearnerModelRecord,
    LearnerRecord,
    MainVersionRecord,
    Record,
    RegistryStatistics,
    TrainingSessionRecord,
)
from aivo.registry.stats import get_statistics
from aivo.registry.versions import (
    archive_main_version,
    get_active_main_version,
    get_main_version,
    list_main_versions,
    next_main_version_name,
    promote_main_version,
    register_main_version,
    rollback_main_version,
)

import types as _types

__all__ = sorted(name for name, value in globals().items()
                 if not name.startswith("_") and not isinstance(value, _types.ModuleType))
