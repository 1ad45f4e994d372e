"""What the rest of indexer asks of an LLM: one interface, two backends.

``ChatLlamaCPP`` (a GGUF in-process) and ``OpenAILikeLLM`` (a local OpenAI-compatible server) both
implement it; the query engine, eval, the judge, question drafting and the HTTP server use nothing
else, so every feature works on either backend.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from llama_index.core.base.llms.types import ChatMessage


@dataclass(frozen=True)
class Usage:
    """Tokens of the last generation: the prompt as the model received it, and the answer."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class JsonReply:
    text: str
    finish_reason: str | None  # "stop", or "length" when cut off at max_tokens


@runtime_checkable
class ChatModel(Protocol):
    @property
    def n_ctx(self) -> int:
        """The context window, in the model's tokens."""
        ...

    @property
    def last_usage(self) -> Usage | None:
        """Token counts of the last generation, once it has finished or stopped."""
        ...

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Prompt tokens for ``messages``, chat template included."""
        ...

    def stream_tokens(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Iterator[str]:
        """The answer's text pieces as they are generated (``max_tokens`` caps it); closing the
        iterator stops generation."""
        ...

    def complete_json(
        self, messages: Sequence[ChatMessage], schema: dict[str, Any], *, max_tokens: int
    ) -> JsonReply:
        """A reply constrained to JSON matching ``schema`` (``ModelError`` if the backend cannot
        constrain its output)."""
        ...
