"""JSON-constrained generation on either LLM backend (``ChatModel.complete_json``: a llama.cpp
grammar in-process, a response format on a server), so even a small local model answers in the
shape asked for.

What can still go wrong (the answer is cut off at ``max_tokens``, the prompt does not fit) is
raised as ``StructuredOutputError`` for the caller to count; it is never scored as a zero.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage

from indexer.components.chat_model import ChatModel
from indexer.errors import ModelError


class StructuredOutputError(Exception):
    """The model gave no usable JSON object (why is in the message)."""


def ask_json(
    llm: ChatModel, messages: Sequence[ChatMessage], schema: dict[str, Any], *, max_tokens: int
) -> dict[str, Any]:
    """The model's reply to ``messages``, constrained to ``schema`` and parsed."""
    try:
        reply = llm.complete_json(messages, schema, max_tokens=max_tokens)
    except ModelError as exc:
        if "JSON-constrained" in str(exc):  # the backend cannot do this at all: not a per-item failure
            raise
        raise StructuredOutputError(str(exc)) from None  # e.g. the prompt does not fit the window
    text, finish = reply.text, reply.finish_reason
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
