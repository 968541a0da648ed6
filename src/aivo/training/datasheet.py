"""Datasheets: every trainer job documents the data it trains on, or it is refused.

After "Datasheets for Datasets" (Gebru et al.): where the data comes from, under what license,
how it was collected, how personal information is handled and redacted, and what it is meant
for. A job without one, or with a field left empty or filled with a placeholder ("n/a",
"unknown", "tbd"), is rejected with `DataError` (HTTP 422) naming the missing fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from aivo.errors import DataError

REQUIRED_FIELDS = ("source", "license", "collection_process", "pii_handling", "intended_use")
_PLACEHOLDERS = {"", "-", "n/a", "na", "none", "unknown", "tbd", "todo", "?", "null", "xxx"}
MAX_FIELD_CHARS = 4000


@dataclass(frozen=True)
class Datasheet:
    source: str  # where the data comes from (system, export, simulator, partner)
    license: str  # terms the data may be used under
    collection_process: str  # how and when it was collected, consent basis
    pii_handling: str  # how personal information is handled: pseudonymization, scrubbing, retention
    intended_use: str  # what models trained on it are for (and not for)
    redaction: str | None = None  # what was removed or masked, if anything beyond pii_handling
    known_limitations: str | None = None  # gaps, biases, populations under-represented
    contact: str | None = None  # who answers questions about the data

    def __post_init__(self) -> None:
        problems = []
        for f in fields(self):
            value = getattr(self, f.name)
            required = f.name in REQUIRED_FIELDS
            if value is None:
                if required:
                    problems.append(f"{f.name} is missing")
                continue
            if not isinstance(value, str):
                problems.append(f"{f.name} must be text, got {type(value).__name__}")
                continue
            text = value.strip()
            if text.casefold() in _PLACEHOLDERS:
                if required:
                    problems.append(f"{f.name} must describe the data, not {value!r}")
                continue
            if len(text) > MAX_FIELD_CHARS:
                problems.append(f"{f.name} is longer than {MAX_FIELD_CHARS} characters")
            object.__setattr__(self, f.name, text)
        if problems:
            raise DataError("the job's datasheet is incomplete: " + "; ".join(problems)
                            + f". A datasheet needs: {', '.join(REQUIRED_FIELDS)}")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def parse_datasheet(value: Mapping[str, Any] | Datasheet | None) -> Datasheet:
    """A validated `Datasheet` from a mapping (request body, CLI file), or `DataError`."""
    if isinstance(value, Datasheet):
        return value
    if value is None:
        raise DataError("a trainer job needs a datasheet (" + ", ".join(REQUIRED_FIELDS) + "); none was given")
    if not isinstance(value, Mapping):
        raise DataError(f"the datasheet must be an object with {', '.join(REQUIRED_FIELDS)}, "
                        f"got {type(value).__name__}")
    known = {f.name for f in fields(Datasheet)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise DataError(f"unknown datasheet field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return Datasheet(**{name: value.get(name) for name in known})


def registry_datasheet(*, tenant: str | None = None) -> Datasheet:
    """The datasheet of AIVO's own interaction data, used by jobs the service starts itself
    (scheduled, drift-triggered, adaptive). Deployments document their data in more detail by
    creating jobs with their own datasheet."""
    scope = f"tenant {tenant!r}" if tenant else "all tenants"
    return Datasheet(
        source=f"interactions stored in the AIVO registry ({scope}): imports, API ingestion and practice sessions",
        license="the deployment's own learner data, used under its data-processing agreement with the schools",
        collection_process="learner attempts recorded by AIVO as they happen (item, skills, correctness, time)",
        pii_handling="learner ids are keyed-HMAC pseudonyms from arrival; free-text columns are scrubbed of "
                     "e-mail addresses, phone numbers and configured names (AIVO_PII_NAMES) before training; "
                     "erasure requests delete a learner's rows everywhere",
        redaction="e-mails -> [EMAIL], phone numbers -> [PHONE], configured names -> [NAME]",
        intended_use="knowledge tracing and practice recommendations for the same learners; not for grading, "
                     "placement or any high-stakes decision",
    )
