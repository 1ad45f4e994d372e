"""JSON-constrained generation with llama.cpp: a grammar built from a JSON schema restricts
sampling to text that parses, so even a small local model answers in the shape asked for.

What can still go wrong (the answer is cut off at ``max_tokens``, the prompt does not fit) is
raised as ``StructuredOutputError`` for the caller to count; it is never scored as a zero.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage

from indexer.errors import IndexerError


class StructuredOutputError(Exception):
    """The model gave no usable JSON object (why is in the message)."""


@functools.lru_cache(maxsize=16)
def _grammar(schema_json: str) -> Any:
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(schema_json, verbose=False)


def ask_json(
    llm: Any, messages: Sequence[ChatMessage], schema: dict[str, Any], *, max_tokens: int
) -> dict[str, Any]:
    """The model's reply to ``messages``, constrained to ``schema`` and parsed."""
    grammar = _grammar(json.dumps(schema, sort_keys=True))
    try:
        response = llm.chat(messages, grammar=grammar, max_tokens=max_tokens)
    except IndexerError as exc:  # the prompt does not fit the context window
        raise StructuredOutputError(str(exc)) from None
    text = response.message.content or ""
    finish = (response.raw or {}).get("choices", [{}])[0].get("finish_reason")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        cut = " (cut off at max_tokens)" if finish == "length" else ""
        raise StructuredOutputError(f"the reply is not complete JSON{cut}: {text[:120]!r}") from None
    if not isinstance(data, dict):
        raise StructuredOutputError(f"the reply is not a JSON object: {text[:120]!r}")
    missing = [key for key in schema.get("required", []) if key not in data]
    if missing:
        raise StructuredOutputError(f"the reply lacks {', '.join(missing)}: {text[:120]!r}")
    return data
