"""Learner data as files (aivo data stats | simulate): summarize an interaction file, simulate a
cohort with known true probabilities and write it. Importing a file into the registry is
aivo.services.registry.import_file."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aivo.data.readers import read_interactions, reader_names
from aivo.data.stats import summarize_log
from aivo.data.writers import check_output_path, write_interactions
from aivo.errors import DataError

__all__ = ["SIMULATE_SUFFIXES", "check_output_path", "reader_names", "simulate_to_file", "summarize_file"]

SIMULATE_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv")


def summarize_file(path: str | Path, *, format: str = "auto", mapping: Mapping[str, str] | None = None
                   ) -> dict[str, Any]:
    """Learners, items, skills, correct rate, history lengths and breakdowns of a file."""
    return summarize_log(read_interactions(path, format=format, mapping=mapping))


def simulate_to_file(*, out: Path, seed: int, truth_dir: Path | None = None,
                     progress: Callable[[int, int], None] | None = None, writing: Callable[[], None] | None = None,
                     **config: Any) -> dict[str, Any]:
    """Simulate a cohort (`config`: SimulatorConfig fields) and write it to `out` (Parquet or CSV,
    by suffix), the hidden truth to `truth_dir` when given. `progress(done, total)` follows the
    simulation, `writing()` is called before the file is written."""
    # start-up: the simulator and its metrics (scikit-learn) load only when a cohort is simulated
    from aivo.data.simulator import SimulatorConfig, oracle_metrics, simulate_cohort

    check_output_path(out)
    if out.suffix.lower() not in SIMULATE_SUFFIXES:
        raise DataError(f"write the simulated log as {' or '.join(SIMULATE_SUFFIXES)} (it has string ids, "
                        f"timestamps and extra columns)", path=str(out))
    began = time.perf_counter()
    cohort = simulate_cohort(config=SimulatorConfig(**config), seed=seed, progress=progress)
    simulated = time.perf_counter()
    if writing is not None:
        writing()
    write_interactions(cohort.log, out)
    truth = [str(p) for p in cohort.save_truth(truth_dir)] if truth_dir else []
    written = time.perf_counter()
    oracle = oracle_metrics(cohort.log)
    frame = cohort.log.frame
    return {
        "out": str(out),
        "seed": seed,
        "learners": cohort.log.num_learners,
        "interactions": cohort.log.num_interactions,
        "skills": cohort.curriculum.num_skills,
        "items": cohort.curriculum.num_items,
        "correct_rate": round(float(frame["correct"].mean()), 4),
        "oracle": {"auc": round(oracle.auc, 4), "log_loss": round(oracle.log_loss, 4),
                   "accuracy": round(oracle.accuracy, 4)},
        "accommodation": {str(k): int(v) for k, v in
                          cohort.learners["accommodation"].value_counts().sort_index().items()},
        "seconds": {"simulate": round(simulated - began, 2), "write": round(written - simulated, 2)},
        "truth_files": truth,
    }
