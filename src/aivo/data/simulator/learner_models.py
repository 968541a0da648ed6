"""Learner models: the hidden truth of how simulated learners answer and learn, behind one small
interface, so that anything evaluated on simulated learners (the closed-loop policy evaluation,
the practice engine) can run on more than one model of learning.

    model = build_learner_model("bkt-forgetting", {"learn_rate": 0.2})
    learners = model.draw(config=SimulatorConfig(num_learners=100), curriculum=curriculum, rng=rng)
    learners.probability(item, day)          # (N,) true P(correct), nothing learned
    learners.respond(item, day, rng)         # draws the answers and learns from them

Models register themselves with `register_learner_model`, which refuses a duplicate name;
`build_learner_model` refuses an unknown name or invalid options with a `ConfigError`.
Registered here: "simulator" (the project's simulator, `dynamics.py`) and, in
`bkt_learners.py` (imported by the package), "bkt-forgetting" (a structurally different model: binary knowledge states,
forgetting with memory stability, per-learner learn rates).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from aivo.data.simulator.config import SimulatorConfig
from aivo.data.simulator.curriculum import Curriculum
from aivo.data.simulator.dynamics import RT_DIFFICULTY_SLOPE, AbilityState, Tables
from aivo.data.simulator.learners import LearnerTraits, draw_learners, learners_frame
from aivo.errors import ConfigError


@dataclass(frozen=True)
class Response:
    """What N learners did with one item each."""

    correct: np.ndarray  # (N,) bool
    p_true: np.ndarray  # (N,) probability the answer was drawn with
    response_time_s: np.ndarray  # (N,) seconds


def response_times(tables: Tables, *, kind: np.ndarray, profile: np.ndarray, speed: np.ndarray, core: np.ndarray,
                   sd: float, rng: np.random.Generator) -> np.ndarray:
    """Log-normal response times (seconds, rounded to 0.01, within 1 s .. 30 min): the median of
    the item type, the learner's speed, the profile's offset and harder items taking longer."""
    mean = (tables.log_median_time[kind] + speed + tables.time_effect[profile, kind]
            - RT_DIFFICULTY_SLOPE * np.clip(core, -3.0, 3.0))
    return np.round(np.clip(np.exp(mean + rng.normal(0.0, sd, len(kind))), 1.0, 1800.0), 2)


class SimulatedLearners(ABC):
    """N learners' hidden state, vectorized over rows. Row i is learner i throughout."""

    grade_index: np.ndarray  # (N,) index into config.grades
    profile_index: np.ndarray  # (N,) index into config.profiles
    start_day: np.ndarray  # (N,) days after config.start_date of the first session

    @property
    def num_learners(self) -> int:
        return len(self.grade_index)

    @abstractmethod
    def probability(self, item: np.ndarray, day: np.ndarray) -> np.ndarray:
        """(N,) true P(correct) if row i answered item[i] on day[i]; changes nothing."""

    @abstractmethod
    def respond(self, item: np.ndarray, day: np.ndarray, rng: np.random.Generator) -> Response:
        """Row i answers item[i] on day[i] and learns from it. Draws `rng.random(N)` for the
        answers first, then `rng.normal(..., N)` for the response times (the practice engine's
        streams depend on that order)."""

    @abstractmethod
    def practice_count(self) -> np.ndarray:
        """(N, K) attempts that exercised each skill so far."""

    @abstractmethod
    def final_state(self, day: np.ndarray) -> np.ndarray:
        """(N, K) the model's per-skill state at `day` (the simulator: retained ability in logits;
        BKT: P(skill known))."""

    @abstractmethod
    def traits_frame(self, learner_ids: np.ndarray) -> pd.DataFrame:
        """One row per learner: learner_id, grade, accommodation and the model's hidden traits."""

    def probabilities(self, items: np.ndarray, day: np.ndarray) -> np.ndarray:
        """(N, J) true P(correct) of row i on each of items[i, :] at day[i]: a post-test that
        teaches nothing."""
        return np.stack([self.probability(items[:, j], day) for j in range(items.shape[1])], axis=1)


class LearnerModel(ABC):
    """A named way of drawing learners. `options` is the model's option dataclass (validated)."""

    name: ClassVar[str]
    options_class: ClassVar[type]
    description: ClassVar[str]

    def __init__(self, options: Any | None = None):
        self.options = options if options is not None else self.options_class()

    @abstractmethod
    def draw(self, *, config: SimulatorConfig, curriculum: Curriculum, rng: np.random.Generator) -> SimulatedLearners:
        """`config.num_learners` learners for `curriculum` (grades, profiles and timing from `config`)."""


_REGISTRY: dict[str, type[LearnerModel]] = {}


def register_learner_model(cls: type[LearnerModel]) -> type[LearnerModel]:
    """Class decorator: make `cls` buildable by its `name`. A name can be registered once."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute 'name'")
    if name in _REGISTRY:
        raise ValueError(f"a learner model named {name!r} is already registered ({_REGISTRY[name].__name__})")
    _REGISTRY[name] = cls
    return cls


def learner_model_names() -> list[str]:
    return sorted(_REGISTRY)


def learner_model_class(name: str) -> type[LearnerModel]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown learner model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_learner_model(name: str, options: Mapping[str, Any] | None = None) -> LearnerModel:
    """The learner model `name` with `options` (field name -> value) over its defaults.
    Unknown names, unknown options and invalid values raise `ConfigError`."""
    cls = learner_model_class(name)
    known = {f.name: f for f in fields(cls.options_class)}
    options = dict(options or {})
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"learner model {name!r} cannot be built: unknown option(s) {', '.join(unknown)}; "
                          f"options: {', '.join(sorted(known))}")
    try:
        values = {key: _coerce(value, type(getattr(cls.options_class(), key))) for key, value in options.items()}
        return cls(cls.options_class(**values))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"learner model {name!r} cannot be built: {exc}") from None


def _coerce(value: Any, kind: type) -> Any:
    """Option values may arrive as text (`--learner-option learn_rate=0.2`)."""
    if isinstance(value, str) and kind in (int, float):
        return kind(value)
    if isinstance(value, str) and kind is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected true or false, got {value!r}")
        return value.lower() in ("true", "1")
    return value


# --- the project's simulator ---------------------------------------------------------------

@dataclass(frozen=True)
class SimulatorOptions:
    """The simulator's learner settings live in SimulatorConfig; nothing extra here."""


class SimulatorLearners(SimulatedLearners):
    """The project's simulator (`dynamics.py`): continuous abilities, gains that grow with
    prerequisite mastery and decay exponentially (docs/data.md, section 4.1)."""

    def __init__(self, config: SimulatorConfig, curriculum: Curriculum, traits: LearnerTraits):
        self.config, self.curriculum, self.traits = config, curriculum, traits
        self.tables = Tables.build(config, curriculum)
        self.state = AbilityState(self.tables, traits.initial_ability.copy(), traits.learning_rate,
                                  traits.forgetting_days)
        self.grade_index, self.profile_index, self.start_day = traits.grade_index, traits.profile_index, \
            traits.start_day

    def probability(self, item: np.ndarray, day: np.ndarray) -> np.ndarray:
        return self.state.attempt(item, day, self.profile_index, self.traits.type_offset).p_true

    def respond(self, item: np.ndarray, day: np.ndarray, rng: np.random.Generator) -> Response:
        attempt = self.state.attempt(item, day, self.profile_index, self.traits.type_offset)
        correct = rng.random(len(item)) < attempt.p_true
        log_rt = self.state.log_response_time_mean(attempt, self.profile_index, self.traits.speed) + rng.normal(
            0.0, self.config.response_time_sd, len(item))
        response_time = np.round(np.clip(np.exp(log_rt), 1.0, 1800.0), 2)
        self.state.learn(attempt, correct, day)
        return Response(correct=correct, p_true=attempt.p_true, response_time_s=response_time)

    def practice_count(self) -> np.ndarray:
        return self.state.count

    def final_state(self, day: np.ndarray) -> np.ndarray:
        return self.state.final_ability(day)

    def traits_frame(self, learner_ids: np.ndarray) -> pd.DataFrame:
        frame = learners_frame(self.traits, self.config, self.curriculum)
        frame["learner_id"] = pd.array(learner_ids, dtype="string")
        return frame


@register_learner_model
class SimulatorModel(LearnerModel):
    name = "simulator"
    options_class = SimulatorOptions
    description = ("the project's simulator: continuous per-skill abilities, IRT answers, gains scaled by "
                   "prerequisite mastery, exponential forgetting")

    def draw(self, *, config: SimulatorConfig, curriculum: Curriculum, rng: np.random.Generator) -> SimulatorLearners:
        return SimulatorLearners(config, curriculum, draw_learners(config, curriculum, rng))
