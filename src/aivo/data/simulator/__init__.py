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

__all__ = [
    "DEFAULT_ACCOMMODATION_EFFECTS", "DEFAULT_ACCOMMODATION_RATES", "DEFAULT_ACCOMMODATION_TIME_EFFECTS",
    "DEFAULT_ITEM_TYPES", "DEFAULT_TYPE_MIX", "Curriculum", "ItemTypeSpec", "SimulatedCohort",
    "SimulatorConfig", "oracle_metrics", "simulate_cohort",
]
