"""Which Main Brain parameters a clone stores, trains and sends to aggregation.

The Main Brain's parameters fall in named groups (`embed.*`, `encoder.*`, `head.*` shared;
`personal.*` per learner). Given the frozen prefixes (`AIVO_FREEZE_LAYERS`, default
"encoder"):

* personal   `personal.*`: trained locally, stored in the clone, never aggregated;
* frozen     shared parameters under a frozen prefix: never trained locally;
* aggregated the other shared parameters: trained locally; their change is the learner's
             update, which federated aggregation averages into the next main version.

With the default, a learner's update covers the embeddings and heads (about 68k values for the
ASSIST2015 benchmark model) while the recurrent encoder, learned centrally, stays fixed.
Freezing "embed,encoder,head" makes clones purely personal (no updates are produced).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aivo.brain.model import MainBrain, PARAMETER_GROUPS, SHARED_GROUPS
from aivo.errors import ConfigError

PERSONAL_PREFIX = "personal."


def parse_prefixes(text: str | Iterable[str]) -> tuple[str, ...]:
    parts = text.split(",") if isinstance(text, str) else list(text)
    return tuple(dict.fromkeys(p.strip() for p in parts if p and p.strip()))


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix.rstrip(".") + ".")


@dataclass(frozen=True)
class ParameterPartition:
    personal: tuple[str, ...]
    frozen: tuple[str, ...]
    aggregated: tuple[str, ...]
    frozen_prefixes: tuple[str, ...]

    @property
    def trainable(self) -> tuple[str, ...]:
        return self.aggregated + self.personal

    def to_dict(self) -> dict:
        return {"frozen_prefixes": list(self.frozen_prefixes), "personal": list(self.personal),
                "frozen": list(self.frozen), "aggregated": list(self.aggregated)}


def partition_parameters(model: MainBrain, *, frozen_prefixes: str | Iterable[str]) -> ParameterPartition:
    """Split the model's parameters by the frozen prefixes (names or name prefixes such as
    "encoder" or "head.correct"). Unknown prefixes and freezing the personal part are errors."""
    prefixes = parse_prefixes(frozen_prefixes)
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if _matches(PERSONAL_PREFIX + "x", prefix) or prefix.split(".")[0] == "personal":
            raise ConfigError(f"cannot freeze {prefix!r}: the personal parameters are what a clone trains")
        if not any(_matches(name, prefix) for name in names):
            raise ConfigError(f"AIVO_FREEZE_LAYERS: {prefix!r} matches no Main Brain parameter; use parameter "
                              f"groups ({', '.join(SHARED_GROUPS)}) or name prefixes such as 'head.correct'")
    personal = tuple(n for n in names if n.startswith(PERSONAL_PREFIX))
    shared = [n for n in names if n.split(".", 1)[0] in PARAMETER_GROUPS and not n.startswith(PERSONAL_PREFIX)]
    frozen = tuple(n for n in shared if any(_matches(n, p) for p in prefixes))
    aggregated = tuple(n for n in shared if n not in frozen)
    return ParameterPartition(personal=personal, frozen=frozen, aggregated=aggregated, frozen_prefixes=prefixes)
