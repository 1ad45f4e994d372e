"""What the rest of indexer asks of an LLM: one interface, three backends.

``ChatLlamaCPP`` (a GGUF in-process), ``OpenAILikeLLM`` (a local OpenAI-compatible server) and
``LlamaIndexChatModel`` (any LlamaIndex ``LLM`` class, ``llm.provider: llama_index``) implement
it; the query engine, eval, the judge, question drafting and the HTTP server use nothing else, so
every feature works on each backend.

Messages are ``Message``s (what the query engine builds: a prompt is made without importing
LlamaIndex) or LlamaIndex ``ChatMessage``s (what ``ChatModelLLM`` passes on); every backend takes
both, reading them through ``role_of`` and ``text_of``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    # Annotations only: importing it loads all of llama_index.core (about 1 s), which neither a
    # retrieve-only query nor an answer from a local model needs.
    from llama_index.core.base.llms.types import ChatMessage


@dataclass(frozen=True)
class Message:
    """One turn of a prompt: ``role`` is "system", "user" or "assistant"."""

    role: str
    content: str


AnyMessage: TypeAlias = "Message | ChatMessage"


def role_of(message: AnyMessage) -> str:
    """The role as plain text ("user"), also for a ``ChatMessage``'s ``MessageRole``."""
    role = message.role
    return str(getattr(role, "value", role))


def text_of(message: AnyMessage) -> str:
    return message.content or ""


@dataclass(frozen=True)
class Usage:
    """Tokens of one generation: the prompt as the model received it, and the answer."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class JsonReply:
    text: str
    finish_reason: str | None  # "stop", or "length" when cut off at max_tokens
    usage: Usage | None = None


class TokenStream:
    """The text pieces of one generation, and its own token counts: the model is shared by
    concurrent requests, so what one generation used travels with it, never on the model.

    ``completion_tokens`` counts the model's tokens generated so far (a text piece may hold
    several, or part of one); ``finish_reason`` is ``"stop"`` or ``"length"`` (``max_tokens``
    reached) once generation has ended, ``None`` while it runs or when it was closed early."""

    def __init__(
        self, generate: Callable[[TokenStream], Generator[str, None, None]], prompt_tokens: int
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self._pieces = generate(self)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stops generation after the token in progress."""
        self._pieces.close()

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.completion_tokens)


@runtime_checkable
class ChatModel(Protocol):
    @property
    def n_ctx(self) -> int:
        """The context window, in the model's tokens."""
        ...

    def count_tokens(self, messages: Sequence[AnyMessage]) -> int:
        """Prompt tokens for ``messages``, chat template included."""
        ...

    def stream_tokens(self, messages: Sequence[AnyMessage], **kwargs: Any) -> TokenStream:
        """The answer's text pieces as they are generated (``max_tokens`` caps its tokens);
        closing the stream stops generation."""
        ...

    def complete_json(
        self, messages: Sequence[AnyMessage], schema: dict[str, Any], *, max_tokens: int
    ) -> JsonReply:
        """A reply constrained to JSON matching ``schema`` (``ModelError`` if the backend cannot
        constrain its output)."""
        ...
