"""Request and response bodies. Our own endpoints are strict (no type coercion, unknown fields
refused, so a typo is an error rather than silently ignored); the OpenAI-compatible ones accept and
ignore the many optional fields that OpenAI clients send, but still type-check the ones we use."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import TYPE_CHECKING, Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from indexer.config.models import RetrievalMode
from indexer.query.engine import Source as EngineSource
from indexer.query.filters import filter_problem
from indexer.query.text import unicode_problem

# JSON scalars only; the query engine defines what a filter means. Checked before pydantic's own
# validation (``_filters_are_scalars``) so a list or an operator key gets one message naming it.
FilterValue = str | int | float | bool


def _filters_are_scalars(value: Any) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            problem = filter_problem(key, item)
            if problem is not None:
                raise ValueError(problem.removeprefix("filters: ").removeprefix("filters."))
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class RetrieveRequest(_Strict):
    question: str = Field(min_length=1, description="What to search the index for.")
    top_k: int | None = Field(None, ge=1, description="Passages to return (default: query.top_k).")
    filters: dict[str, FilterValue] | None = Field(
        None,
        description='Metadata filters, e.g. {"path": "guides/*", "type": "pdf"}; added to retrieval.filters.',
    )
    mode: RetrievalMode | None = Field(
        None, description="Retrieval mode for this request (default: retrieval.mode)."
    )

    _scalar_filters = field_validator("filters", mode="before")(_filters_are_scalars)


class HistoryTurn(_Strict):
    role: Literal["user", "assistant"]
    content: str

    @field_validator("content")
    @classmethod
    def _valid_text(cls, content: str) -> str:
        # Checked here, where the field has its name: deeper, the embedder fails after retries.
        problem = unicode_problem(content)
        if problem is not None:
            raise ValueError(problem)
        return content


class QueryRequest(RetrieveRequest):
    stream: bool = Field(False, description="Stream Server-Sent Events: tokens, then sources, then done.")
    history: list[HistoryTurn] = Field(
        default_factory=list,
        max_length=64,
        description="Earlier turns of the conversation, oldest first: the question is read as a follow-up.",
    )
    max_tokens: int | None = Field(
        None, ge=1, description="Cap on the answer's tokens (≤ llm.max_new_tokens)."
    )


def _wire_source() -> type[BaseModel]:
    """``indexer.query.engine.Source`` as ``to_dict`` sends it, built from the dataclass so that a
    field is declared once: its fields and types, less ``metadata``, whose citation keys (page,
    section, ...) travel as extra fields."""
    hints = get_type_hints(EngineSource)
    declared: dict[str, Any] = {}
    for item in fields(EngineSource):
        if item.name == "metadata":
            continue
        if item.default_factory is not MISSING:
            default: Any = Field(default_factory=item.default_factory)
        else:
            default = ... if item.default is MISSING else item.default
        declared[item.name] = (hints[item.name], default)
    return create_model("Source", __config__=ConfigDict(extra="allow"), **declared)


if TYPE_CHECKING:
    # A model made at run time is no type to mypy: it sees a model with any fields instead.
    class Source(BaseModel):
        model_config = ConfigDict(extra="allow")
else:
    Source = _wire_source()


class RetrieveResponse(BaseModel):
    sources: list[Source]
    notice: str | None = None


class AnswerSentence(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str = Field(description="The sentence as the answer has it.")
    citations: list[int] = Field(description="Ranks of the sources it cites.")
    support: float = Field(description="How well the best passage supports it, 0 to 1.")
    supported: bool = Field(
        description="False when no passage supports it, or it states a number, "
        "date, code or name found in no passage (see reason)."
    )
    cited_by: Literal["model", "system"] | None = Field(
        description="'model': its own [n]; 'system': added where the model cited none."
    )
    reason: str | None = Field(None, description="Why it is not supported.")
    start: int = Field(description="Where it starts in the answer text (characters).")
    end: int = Field(description="Where it ends in the answer text (characters).")


class QueryResponse(BaseModel):
    answer: str | None = Field(description="The answer; null when no LLM is configured (see notice).")
    sources: list[Source]
    notice: str | None = None
    finish_reason: str = "stop"
    abstained: bool = Field(
        False,
        description="No passage was relevant enough: the LLM was not asked, the sources are the nearest.",
    )
    sentences: list[AnswerSentence] = Field(
        default_factory=list, description="Each answer sentence with its citations and support."
    )


# -- OpenAI-compatible ---------------------------------------------------------------------------


class ChatContentPart(_Lenient):
    type: str
    text: str | None = None


class ChatMessageIn(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ChatContentPart] | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    model: str = Field(description="A model id from /v1/models.")
    messages: list[ChatMessageIn] = Field(
        min_length=1,
        description="The last message (a user message) is the question; earlier ones are history.",
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=1, description="Only one choice is generated.")
    temperature: float | None = Field(None, ge=0, le=2, description="Accepted; llm.temperature applies.")
    top_p: float | None = Field(None, ge=0, le=1, description="Accepted; llm.top_p applies.")
    top_k: int | None = Field(None, ge=1, description="Extension: passages to retrieve.")
    filters: dict[str, FilterValue] | None = Field(None, description="Extension: metadata filters.")

    _scalar_filters = field_validator("filters", mode="before")(_filters_are_scalars)


class EmbeddingsRequest(_Lenient):
    model: str = Field(description="The index's embedding model, as listed by /v1/models.")
    input: str | list[str] | list[int] | list[list[int]] = Field(description="A text or a list of texts.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "indexer"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    generation: dict[str, int]


class IndexResponse(BaseModel):
    model: str
    vector_store: str
    collection: str
    counts: dict[str, int]
    llm: bool
    manifest: dict[str, Any]
