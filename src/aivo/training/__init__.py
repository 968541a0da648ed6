"""Continuous training: the Main Brain pipeline, trainer jobs (leases, workers), the evaluation
harness with datasheets, drift monitoring and the adaptive orchestrator.

Kept import-light on purpose: the registry imports `aivo.training.tables` to know these tables.
"""
