"""``llm.provider: llama_index``: any LlamaIndex ``LLM`` (``llm.class``, made with ``llm.kwargs``)
behind the interface the rest of indexer asks of an LLM (``chat_model.ChatModel``), so the engine,
eval, the judge, the server, MCP and the web page answer through it as through the other backends.

What a LlamaIndex LLM does not offer in general is done here:

- ``max_tokens``: generation is closed after that many streamed pieces (finish reason
  ``length``); LlamaIndex's LLMs stream about one token per piece. Give the class its own limit
  in ``llm.kwargs`` too (``max_tokens`` for most) so that it stops generating itself.
- ``llm.stop``: the text is cut before the first stop string, and generation closed.
- token counts: those the LLM reports (``prompt_tokens``/``completion_tokens`` in a response's
  ``additional_kwargs``, as LlamaIndex's OpenAI classes put them), else the pieces streamed and a
  conservative estimate of the prompt from its length (as ``openai_like`` does without a
  tokenize endpoint).
- JSON replies (the judge, question drafting): asked for in the prompt and taken from the reply;
  a model that is poor at it gives per-item errors, never wrong scores.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from indexer.components.chat_model import AnyMessage, JsonReply, TokenStream, role_of, text_of
from indexer.config.models import LLMConfig
from indexer.config.plugins import LLM_BASE, build, scrub
from indexer.errors import IndexerError, ModelError

# As openai_like.py: template tokens per message, and English bytes per token at the low end.
_TEMPLATE_TOKENS_PER_MESSAGE = 8
_BYTES_PER_TOKEN_ESTIMATE = 2.5
_JSON_INSTRUCTION = "Reply with one JSON object only, no other text, that matches this JSON schema:\n{schema}"


class LlamaIndexChatModel:
    """A LlamaIndex ``LLM`` as a ``ChatModel``; ``llm`` is the LlamaIndex object itself."""

    def __init__(self, config: LLMConfig, where: str = "the config") -> None:
        assert config.class_ is not None
        self.config = config
        self.class_path = config.class_
        self.llm: Any = build(config.class_, config.kwargs, base=LLM_BASE, field="llm.class", where=where)
        self.exact_token_counts = False
        self._stop = list(config.stop)

    @property
    def n_ctx(self) -> int:
        return self.config.n_ctx

    def count_tokens(self, messages: Sequence[AnyMessage]) -> int:
        """An estimate on the safe side: a LlamaIndex LLM exposes no tokenizer in general."""
        text_tokens = sum(_estimate(text_of(m)) for m in messages)
        return text_tokens + _TEMPLATE_TOKENS_PER_MESSAGE * len(messages) + 2

    def stream_tokens(self, messages: Sequence[AnyMessage], **kwargs: Any) -> TokenStream:
        """The reply's pieces as ``stream_chat`` gives them, cut at ``max_tokens`` pieces and at
        ``llm.stop``. The call is made here, so an LLM that cannot be reached fails at once."""
        max_tokens = int(kwargs.pop("max_tokens", None) or self.config.max_new_tokens)
        prompt_tokens = self.count_tokens(messages)
        try:
            responses = self.llm.stream_chat(_chat_messages(messages))
        except Exception as exc:
            raise self._error(exc) from None
        stops = self._stop
        hold = max((len(s) for s in stops), default=1) - 1

        def pieces(stream: TokenStream) -> Generator[str, None, None]:
            pending = ""  # text not yet shown: it may be the start of a stop string
            counted = 0
            reported: int | None = None
            try:
                for response in responses:
                    extra = getattr(response, "additional_kwargs", None) or {}
                    if isinstance(extra.get("prompt_tokens"), int):
                        stream.prompt_tokens = extra["prompt_tokens"]
                    if isinstance(extra.get("completion_tokens"), int):
                        reported = extra["completion_tokens"]
                    delta = response.delta or ""
                    if not delta:
                        continue
                    counted += 1
                    stream.completion_tokens = reported if reported is not None else counted
                    pending += delta
                    cut = _first_stop(pending, stops)
                    if cut is not None:
                        if pending[:cut]:
                            yield pending[:cut]
                        pending = ""
                        stream.finish_reason = "stop"
                        return
                    if counted >= max_tokens:
                        if pending:
                            yield pending
                        pending = ""
                        stream.finish_reason = "length"
                        return
                    shown = pending[: max(0, len(pending) - hold)]
                    if shown:
                        pending = pending[len(shown) :]
                        yield shown
                if pending:
                    yield pending
                stream.finish_reason = "stop"
            except GeneratorExit:
                raise
            except IndexerError:
                raise
            except Exception as exc:
                raise self._error(exc) from None
            finally:
                close = getattr(responses, "close", None)
                if close is not None:
                    close()  # stops the LLM's own stream (and its HTTP response, for a client)

        return TokenStream(pieces, prompt_tokens)

    def complete_json(
        self, messages: Sequence[AnyMessage], schema: dict[str, Any], *, max_tokens: int
    ) -> JsonReply:
        """The schema is put in the system turn; the reply's first JSON object is returned (the
        whole reply when it holds none, for ``ask_json`` to report)."""
        instruction = _JSON_INSTRUCTION.format(schema=json.dumps(schema))
        asked = _chat_messages(messages)
        if asked and asked[0].role == MessageRole.SYSTEM:
            asked[0] = ChatMessage(role=MessageRole.SYSTEM, content=f"{asked[0].content}\n\n{instruction}")
        else:
            asked.insert(0, ChatMessage(role=MessageRole.SYSTEM, content=instruction))
        stream = self.stream_tokens(asked, max_tokens=max_tokens)
        text = "".join(stream)
        return JsonReply(_json_object(text), stream.finish_reason, stream.usage)

    def _error(self, exc: Exception) -> ModelError:
        message = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "", self.config.kwargs)
        return ModelError(f"the LLM {self.class_path} (llm.class) failed: {type(exc).__name__}: {message}")


def _chat_messages(messages: Sequence[AnyMessage]) -> list[ChatMessage]:
    """LlamaIndex's own message type, which its LLMs expect (the engine's prompts are ``Message``s)."""
    return [
        m if isinstance(m, ChatMessage) else ChatMessage(role=MessageRole(role_of(m)), content=text_of(m))
        for m in messages
    ]


def _estimate(text: str) -> int:
    return int(len(text.encode("utf-8")) / _BYTES_PER_TOKEN_ESTIMATE) + 1


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _json_object(text: str) -> str:
    """The first complete JSON object in ``text`` (models like to wrap it in prose or fences)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start >= 0:
        try:
            _, end = decoder.raw_decode(text, start)
            return text[start:end]
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    return text
