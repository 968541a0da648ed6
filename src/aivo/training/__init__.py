"""Training machinery the use cases share: trainer jobs (repository, leases, the job-kind
interface and registry, workers), retraining guards, the evaluation harness with datasheets,
hyperparameter search and drift statistics. The pipeline, drift checks and the adaptive check
that use them are use cases, in `aivo.services`.

The tables these use are defined with every other table in `aivo.registry.tables`.
"""
