"""Prometheus metrics for GET /metrics.

Request counters and latency histograms live in a registry private to the app (tests build
many apps in one process). With several uvicorn workers, `aivo serve` sets
`PROMETHEUS_MULTIPROC_DIR` before the workers start: prometheus-client then keeps the values in
files shared by the workers, and a scrape adds them up (MultiProcessCollector), whichever
worker answers. Registry figures (learners, versions, sessions) are read from the database at
scrape time, so they are the same from every worker.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from aivo.registry import RegistryStatistics

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


class _RegistryCollector:
    def __init__(self, read_stats: Callable[[], RegistryStatistics]):
        self.read_stats = read_stats

    def collect(self) -> Iterator:
        stats = self.read_stats()
        for name, value, doc in (
            ("aivo_learners", stats.total_learners, "Learners in the registry."),
            ("aivo_main_versions", stats.total_main_versions, "Main Brain versions."),
            ("aivo_learner_models", stats.total_learner_models, "Learner models (clones)."),
            ("aivo_learner_models_active", stats.active_learner_models, "Active learner models."),
            ("aivo_federated_updates", stats.total_federated_updates, "Federated aggregation rounds."),
            ("aivo_training_sessions", stats.total_training_sessions, "Local training sessions."),
            ("aivo_training_sessions_pending", stats.pending_training_sessions,
             "Training sessions not yet aggregated."),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        info = InfoMetricFamily("aivo_active_model", "The active Main Brain version.")
        info.add_metric([], {"version": stats.active_main_version or ""})
        yield info


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("aivo_http_requests", "HTTP requests answered.", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("aivo_http_request_duration_seconds", "Time to answer, per route.",
                                 ["method", "route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.ingested = Counter("aivo_interactions_ingested", "Interactions stored through the API.",
                                registry=self.registry)
        self.recommendations = Counter("aivo_recommendations", "Recommendations served.", ["cached"],
                                       registry=self.registry)

    def observe_request(self, *, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self, *, read_stats: Callable[[], RegistryStatistics]) -> bytes:
        """The exposition text: request metrics (all workers) and registry gauges."""
        scrape = CollectorRegistry(auto_describe=False)
        if multiprocess_dir():
            MultiProcessCollector(scrape)
            body = generate_latest(scrape)
        else:
            body = generate_latest(self.registry)
        gauges = CollectorRegistry(auto_describe=False)
        gauges.register(_RegistryCollector(read_stats))
        return body + generate_latest(gauges)
