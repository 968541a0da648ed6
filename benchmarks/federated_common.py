"""Helpers shared by the federated and personalization benchmarks (not a benchmark itself)."""

from __future__ import annotations

import platform
import resource
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KT = REPO.parent / "shared" / "data" / "kt"
RESULTS = HERE / "RESULTS.md"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> str:
    import os

    load = os.getloadavg()[0]
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"1-minute load average {load:.1f} (other engineers' jobs share the cores)")


def write_section(*, heading: str, start: str, end: str, body: str) -> None:
    """Replace (or append) this benchmark's own section of RESULTS.md."""
    section = f"{start}\n{body.rstrip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n## {heading}\n\n" + section + "\n"
    RESULTS.write_text(text)


def per_learner(encoded, learner_ids: np.ndarray) -> list:
    """An EncodedLog of many learners (rows grouped by learner) -> one LearnerChunks per learner."""
    from aivo.brain.batching import EncodedLog
    from aivo.personalization.batched import LearnerChunks

    starts = encoded.chunk_start
    owner = learner_ids[starts]
    bounds = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1], True])
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        first, last = starts[a], starts[b - 1] + encoded.chunk_length[b - 1]
        rows = slice(first, last)
        out.append(LearnerChunks(str(owner[a]), EncodedLog(
            item=encoded.item[rows], skills=encoded.skills[rows], item_type=encoded.item_type[rows],
            correct=encoded.correct[rows], features=encoded.features[rows], difficulty=encoded.difficulty[rows],
            position=encoded.position[rows], chunk_start=starts[a:b] - first, chunk_length=encoded.chunk_length[a:b])))
    return out
