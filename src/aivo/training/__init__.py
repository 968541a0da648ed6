"""Continuous training: the Main Brain pipeline, trainer jobs (leases, workers), the evaluation
harness with datasheets, drift monitoring and the adaptive orchestrator.

The tables these use are defined with every other table in `aivo.registry.tables`.
"""
