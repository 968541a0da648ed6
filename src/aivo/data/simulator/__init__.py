"""A synthetic K-12 cohort with known ground truth (see docs/data.md for the model).

    from aivo.data.simulator import SimulatorConfig, simulate_cohort, oracle_metrics
    cohort = simulate_cohort(config=SimulatorConfig(num_learners=500), seed=0)
    oracle_metrics(cohort.log).auc
"""

from aivo.data.simulator.cohort import SimulatedCohort, oracle_metrics, simulate_cohort
from aivo.data.simulator.config import (
    DEFAULT_ACCOMMODATION_EFFECTS,
    DEFAULT_ACCOMMODATION_RATES,
    DEFAULT_ACCOMMODATION_TIME_EFFECTS,
    DEFAULT_ITEM_TYPES,
    DEFAULT_TYPE_MIX,
    ItemTypeSpec,
    SimulatorConfig,
)
from aivo.data.simulator.curriculum import Curriculum
from aivo.data.simulator.learner_models import (
    LearnerModel,
    SimulatedLearners,
    build_learner_model,
    learner_model_class,
    learner_model_names,
    register_learner_model,
)
from aivo.data.simulator import bkt_learners  # noqa: E402,F401  (registers "bkt-forgetting")

__all__ = [
    "DEFAULT_ACCOMMODATION_EFFECTS", "DEFAULT_ACCOMMODATION_RATES", "DEFAULT_ACCOMMODATION_TIME_EFFECTS",
    "DEFAULT_ITEM_TYPES", "DEFAULT_TYPE_MIX", "Curriculum", "ItemTypeSpec", "LearnerModel", "SimulatedCohort",
    "SimulatedLearners", "SimulatorConfig", "build_learner_model", "learner_model_class", "learner_model_names",
    "oracle_metrics", "register_learner_model", "simulate_cohort",
]
