"""Request and response models of the tutor endpoints (pydantic), shared by router and service.

Field names follow the seed design (/v1/generate, /v1/assess, /v1/clone/...) and the OpenAI
chat-completions format (/v1/chat/completions).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator

from aivo.utils import JsonInt

MAX_PROMPT_CHARS = 8000
MAX_SEED = 2**32 - 1


def _json_false(value):
    if not isinstance(value, bool):
        raise ValueError("must be false (a boolean), or left out")
    return value


class _Request(BaseModel):
    """Request bodies: strict JSON types ("0.5" is not a number, 0 is not false), finite numbers."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)


class StudentContextIn(_Request):
    """Who is asking. `disability` (seed design) and `accommodations` may both be given."""

    model_config = ConfigDict(extra="ignore")
    student_id: str | None = Field(None, max_length=64, description="The learner's id as the school's systems know "
                                                                    "it (or the stored pseudonym); selects the adapter.")
    grade: str | JsonInt = Field("5", description="K or 1-12.")
    subject: str | None = Field(None, max_length=100)
    learning_style: str | None = Field(None, description="visual, auditory, reading_writing or kinesthetic.")
    disability: str | None = Field(None, description="One accommodation: adhd, dyslexia, autism, anxiety.")
    accommodations: list[str] = Field(default_factory=list, max_length=8)

    def accommodation_names(self) -> list[str]:
        names = list(self.accommodations)
        if self.disability:
            names.extend(n.strip() for n in self.disability.replace(";", ",").split(","))
        return names


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Readability(BaseModel):
    fk_grade: float
    target_grade: int
    band_low: float
    band_high: float
    within_band: bool
    words: int
    sentences: int


class SafetyInfo(BaseModel):
    blocked: bool
    stage: Literal["input", "output"] | None = None
    category: str | None = None
    detector: Literal["rules", "classifier"] | None = Field(None, description="What caught it.")


class SourceOut(BaseModel):
    """A lesson passage from the school's content library that the explanation is grounded in."""

    ref: int = Field(..., description="Its number [n] in the prompt.")
    lesson_id: str
    passage_id: str
    title: str
    subject: str
    grade: int
    skill: str
    score: float = Field(..., description="Cosine similarity to the question.")


# --- /v1/generate -----------------------------------------------------------------------------
class GenerateRequest(_Request):
    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS)
    context: StudentContextIn = Field(default_factory=StudentContextIn)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: JsonInt | None = Field(None, ge=1, le=4096)
    seed: JsonInt | None = Field(None, ge=0, le=MAX_SEED, description="Same seed, same request: same answer.")


class GenerateResponse(BaseModel):
    response: str = Field(..., description="The explanation, then a note naming the lessons it is based on "
                                           "(or saying that it comes from the model alone).")
    explanation: str = Field(..., description="The explanation alone (shaped for the accommodations).")
    source_note: str | None = None
    grounded: bool = Field(False, description="True when lessons from the school's library were used.")
    sources: list[SourceOut] = Field(default_factory=list)
    model: str
    adapter_used: str | None = Field(None, description="The learner whose adapter answered; null = base model.")
    tokens_used: int
    usage: Usage
    readability: Readability
    finish_reason: str
    safety: SafetyInfo
    timestamp: datetime


# --- /v1/assess -------------------------------------------------------------------------------
class AssessCriteria(_Request):
    subject: str | None = None
    grade: str | JsonInt = "5"
    learning_objective: str | None = Field(None, max_length=1000)
    question: str | None = Field(None, max_length=2000)
    reference_answers: list[str] = Field(default_factory=list, max_length=20)
    exemplars: list[str] = Field(default_factory=list, max_length=50, description="Accepted student answers.")
    rubric_keywords: list[str] = Field(default_factory=list, max_length=30,
                                       description='Key ideas; synonyms separated by "|", e.g. "co2|carbon dioxide".')
    misconceptions: list[str] = Field(default_factory=list, max_length=30,
                                      description='Known wrong ideas, e.g. "from the soil|in the soil": an answer '
                                                  "stating one scores as wrong even if it lists every keyword.")


class AssessRequest(_Request):
    student_response: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS)
    criteria: AssessCriteria
    context: StudentContextIn | None = Field(None, description="Shapes the feedback's tone and layout.")


class AssessResponse(BaseModel):
    correctness: float = Field(..., ge=0, le=100)
    understanding_level: str
    feedback: str
    strengths: list[str]
    areas_for_improvement: list[str]
    next_steps: str
    similarity: float | None
    keyword_coverage: float | None
    matched_keywords: list[str]
    missing_keywords: list[str]
    misconceptions: list[str] = Field(default_factory=list, description="Known wrong ideas the answer states.")
    on_topic: bool
    feedback_source: Literal["template", "llm"]


# --- /v1/clone --------------------------------------------------------------------------------
class StudentProfile(_Request):
    model_config = ConfigDict(extra="ignore")
    name: str | None = Field(None, description="Accepted for compatibility; never stored or used.")
    grade: str | JsonInt = "5"
    subject: str | None = None
    disability: str | None = None
    accommodations: list[str] = Field(default_factory=list)
    learning_style: str | None = None


class BaselineResponseIn(_Request):
    question: str = Field(..., min_length=1, max_length=2000)
    response: str = Field("", max_length=4000)
    correct: bool | None = None
    score: float | None = Field(None, ge=0, le=100)
    reference_answer: str | None = Field(None, max_length=4000)
    explanation: str | None = Field(None, max_length=4000)


class BaselineData(_Request):
    assessment_id: str | None = None
    responses: list[BaselineResponseIn] = Field(default_factory=list, max_length=500)
    overall_score: float | None = Field(None, ge=0, le=100)


class PreferredExplanationIn(_Request):
    prompt: str = Field(..., min_length=1, max_length=2000)
    explanation: str = Field(..., min_length=1, max_length=4000)


class LoraIn(_Request):
    r: JsonInt | None = Field(None, ge=1, le=256)
    alpha: JsonInt | None = Field(None, ge=1, le=1024)
    dropout: float | None = Field(None, ge=0, lt=1)
    target_modules: list[str] | None = Field(None, min_length=1, max_length=16)


class CloneStartRequest(_Request):
    student_id: str = Field(..., min_length=1, max_length=64)
    student_profile: StudentProfile = Field(default_factory=StudentProfile)
    baseline_data: BaselineData = Field(default_factory=BaselineData)
    preferred_explanations: list[PreferredExplanationIn] = Field(default_factory=list, max_length=500)
    lora: LoraIn | None = None
    epochs: JsonInt | None = Field(None, ge=1, le=50)


class CloneStartResponse(BaseModel):
    clone_id: str
    student_id: str
    status: Literal["cloning_started"]
    estimated_time_seconds: float


class CloneStatusResponse(BaseModel):
    clone_id: str
    student_id: str
    status: str
    progress: int = Field(..., ge=0, le=100)
    message: str
    adapter_sha256: str | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime


# --- /v1/chat/completions (OpenAI-compatible) -------------------------------------------------
class ContentPart(_Request):
    """Only text parts are supported (images, audio and files are refused)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str = Field(..., max_length=MAX_PROMPT_CHARS)


class ChatMessage(_Request):
    """OpenAI's message: `content` is a string or a list of parts (only text parts are supported);
    `developer` is OpenAI's newer name for the system role."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] = Field(..., max_length=MAX_PROMPT_CHARS)

    @field_validator("content")
    @classmethod
    def _text_only(cls, content):
        text = "\n".join(p.text for p in content) if isinstance(content, list) else content
        if len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"a message may have at most {MAX_PROMPT_CHARS} characters")
        return text

    @property
    def text(self) -> str:
        return self.content  # a str after validation

    @property
    def chat_role(self) -> str:
        return "system" if self.role == "developer" else self.role


class StreamOptions(_Request):
    include_usage: bool = False


StopSequence = Annotated[str, Field(min_length=1, max_length=100)]


class ResponseFormatText(_Request):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]


class ChatCompletionRequest(_Request):
    """OpenAI's request, restricted to what AIVO implements: other fields are refused (400)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field("aivo-tutor", description='"aivo-tutor" (base) or "aivo-tutor:<learner id>" (that '
                                                 "learner's adapter).")
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=100, json_schema_extra={
        "contains": {"type": "object", "properties": {"role": {"const": "user"}}, "required": ["role"]}})
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: JsonInt | None = Field(None, ge=1, le=4096)
    max_completion_tokens: JsonInt | None = Field(None, ge=1, le=4096)
    seed: JsonInt | None = Field(None, ge=0, le=MAX_SEED)
    n: JsonInt = Field(1, ge=1, le=1, description="Only one choice is generated.")
    stop: StopSequence | list[StopSequence] | None = Field(
        None, max_length=4, description="Up to 4 sequences; generation stops before them.")
    metadata: dict[str, str] | None = Field(None, description="Accepted and ignored (OpenAI's field).")
    response_format: ResponseFormatText | None = Field(None, description='Only {"type": "text"}.')
    # Literal[False] alone lets 0 through (0 == False): JSON's 0 is a number, not false
    logprobs: Annotated[Literal[False], BeforeValidator(_json_false)] | None = Field(
        None, description="Log probabilities are not returned.")
    store: bool | None = Field(None, description="Accepted and ignored: AIVO stores no completions.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    aivo_context: StudentContextIn | None = Field(
        None, description="AIVO extension: build the student-aware system prompt when no system message is sent.")

    @field_validator("messages")
    @classmethod
    def _has_user(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" for m in messages):
            raise ValueError("at least one message must come from the user")
        return messages

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop):
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        return stops or None

    # Set by the API after its access check: the learner `model` names, as stored (pseudonym).
    # Private, so a client cannot set it in the body.
    _learner_id: str | None = PrivateAttr(None)

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        return tuple(self.stop or ())

    @property
    def learner_id(self) -> str | None:
        return self._learner_id

    @learner_id.setter
    def learner_id(self, value: str | None) -> None:
        self._learner_id = value


# Fields of OpenAI's chat-completions request that AIVO does not implement: refused with a 400
# in OpenAI's error shape, rather than silently ignored.
UNSUPPORTED_CHAT_FIELDS = ("tools", "tool_choice", "functions", "function_call", "response_format", "logprobs",
                           "top_logprobs", "logit_bias", "audio", "modalities", "prediction", "parallel_tool_calls",
                           "web_search_options")


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "aivo"


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatChoiceMessage
    finish_reason: str


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


# --- health -----------------------------------------------------------------------------------
class TutorHealth(BaseModel):
    model_loaded: bool
    model_name: str
    device: str | None
    gpu_available: bool
    is_tiny_model: bool | None
    adapters_cached: int
    adapter_cache_capacity: int
    batches: int
    mean_batch_size: float


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    """OpenAI's error shape, which its clients parse."""

    error: OpenAIError

