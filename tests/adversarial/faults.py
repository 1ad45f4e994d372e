"""Faults on the real LLM: the model runs, but its sampling is steered to text a test needs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest


def fault_forced_text(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """Every answer of the in-process LLM (``ChatLlamaCPP``) becomes ``text`` repeated, token by
    token as the model tokenizes it, until a stop or ``max_tokens``: a logits processor leaves only
    the next token of the cycle."""
    from indexer.components.llm import ChatLlamaCPP

    original = ChatLlamaCPP.stream_tokens

    def stream_tokens(self: ChatLlamaCPP, messages: Sequence[Any], **kwargs: Any) -> Any:
        cycle = self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        prompt_length: list[int] = []

        def force(input_ids: Any, scores: Any) -> Any:
            if not prompt_length:
                prompt_length.append(len(input_ids))
            wanted = cycle[(len(input_ids) - prompt_length[0]) % len(cycle)]
            forced = np.full_like(scores, -np.inf)
            forced[wanted] = 0.0
            return forced

        from llama_cpp import LogitsProcessorList

        return original(self, messages, logits_processor=LogitsProcessorList([force]), **kwargs)

    monkeypatch.setattr(ChatLlamaCPP, "stream_tokens", stream_tokens)
