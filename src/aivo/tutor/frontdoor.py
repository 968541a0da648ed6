"""What the tutor's pipeline modules (generation, chat, evaluation) call back into: the tutor's
front door, `aivo.services.tutor.TutorService`. A Protocol, so that the domain names the methods
it needs without importing the service layer above it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from aivo.clock import Clock
from aivo.config import Settings

if TYPE_CHECKING:
    from aivo.tutor.adapter_store import AdapterRef, AdapterStore
    from aivo.tutor.options import GenerationParams
    from aivo.tutor.prompting import StudentContext
    from aivo.tutor.safety import SafetyFilter, SafetyVerdict
    from aivo.tutor.schemas import GenerateRequest, GenerateResponse
    from aivo.tutor.streams import TokenStream


class Tutor(Protocol):
    settings: Settings
    clock: Clock

    @property
    def model_name(self) -> str: ...

    @property
    def store(self) -> "AdapterStore": ...

    @property
    def safety_filter(self) -> "SafetyFilter": ...

    def load(self) -> None: ...

    def now(self) -> datetime: ...

    def params(self, *, temperature: float | None = None, top_p: float | None = None,
               max_new_tokens: int | None = None, seed: int | None = None) -> "GenerationParams": ...

    def learner_adapter(self, learner_id: str | None) -> "AdapterRef | None": ...

    def submit_messages(self, *, messages: list[dict[str, str]], adapter: "AdapterRef | None",
                        params: "GenerationParams") -> "TokenStream": ...

    def report_blocked_input(self, *, learner_id: str | None, verdict: "SafetyVerdict", text: str) -> None: ...

    def retrieve(self, question: str, *, context: "StudentContext") -> Any: ...

    def generate(self, request: "GenerateRequest") -> "GenerateResponse": ...
