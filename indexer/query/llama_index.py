"""LlamaIndex objects over indexer's own engine: a retriever, a query engine, a chat engine and an
LLM, for LlamaIndex's evaluators, agents, tools and workflows (``Indexer.as_retriever`` and the
other ``as_*`` methods hand them out).

They wrap ``QueryEngine`` and add nothing to what it does: the committed view during builds,
filters, retrieval modes, fusion, context fitting, the chat template and the runaway guard all
stay indexer's. Where LlamaIndex's default behaviour differs, indexer's wins:

- scores are the ones indexer shows: cosine similarity in ``vector`` mode, BM25 in ``bm25``, the
  fused score in ``hybrid`` (or the cross-encoder's after a rerank), never ``exp(-distance)``;
- a query engine's ``source_nodes`` are the passages the prompt held, in rank order, so ``[n]`` in
  the answer is ``source_nodes[n - 1]`` (``metadata["citations"]`` lists the numbers it cites);
- without an LLM, ``response`` is None and ``metadata["notice"]`` says why, as ``indexer query``
  shows sources only.

This module imports LlamaIndex at once: only ``as_*`` methods import it.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator, Generator, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.base.response.schema import Response, StreamingResponse
from llama_index.core.callbacks import CallbackManager
from llama_index.core.chat_engine.types import (
    AgentChatResponse,
    BaseChatEngine,
    StreamingAgentChatResponse,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilters
from pydantic import PrivateAttr

from indexer.components import Components
from indexer.components.chat_model import ChatModel
from indexer.config.models import RetrievalMode
from indexer.errors import ConfigError
from indexer.index.store import TEXT
from indexer.query.chat import MAX_TURNS
from indexer.query.engine import Answer, AnswerStream, QueryEngine, Source, _turn
from indexer.query.filters import FilterValue

# Fields an ``Answer`` may carry beyond the ones every version has (abstention, per-sentence
# attribution): passed on in ``Response.metadata`` when present.
_OPTIONAL_ANSWER_FIELDS = ("abstained", "sentences")

T = TypeVar("T")


def source_node(source: Source) -> NodeWithScore:
    """A retrieved passage as LlamaIndex sees a chunk: the chunk id, its text and metadata, its
    document as ``ref_doc_id``, and the score indexer shows."""
    metadata = {
        k: v for k, v in source.metadata.items() if k != TEXT and not k.startswith("_") and v is not None
    }
    node = TextNode(
        id_=source.chunk_id,
        text=source.text,
        metadata=metadata,
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=source.doc_id)},
    )
    return NodeWithScore(node=node, score=source.score)


def indexer_filters(filters: Mapping[str, FilterValue] | MetadataFilters | None) -> dict[str, FilterValue]:
    """indexer's filter mapping (``{"path": "guides/*", "page": 3}``), or LlamaIndex
    ``MetadataFilters`` made only of ``==`` filters joined by AND, which mean the same."""
    if filters is None:
        return {}
    if not isinstance(filters, MetadataFilters):
        return dict(filters)
    out: dict[str, FilterValue] = {}
    if filters.condition not in (None, FilterCondition.AND):
        raise ConfigError("filters: only MetadataFilters joined by AND are supported (indexer ANDs filters)")
    for item in filters.filters:
        if isinstance(item, MetadataFilters) or item.operator != FilterOperator.EQ:
            raise ConfigError(
                f"filters: {item!r} is not supported: use == filters (FilterOperator.EQ), or indexer's "
                "filter mapping such as {'path': 'guides/*', 'type': 'pdf', 'page': 3}"
            )
        if not isinstance(item.value, str | int | float | bool):
            raise ConfigError(f"filters.{item.key}: a single string, number or boolean is needed")
        out[item.key] = item.value
    return out


class IndexerRetriever(BaseRetriever):
    """``Indexer.retrieve`` as a LlamaIndex retriever.

    ``similarity_top_k`` (default ``query.top_k``): passages per question, exactly that many when
    the index holds enough that pass the filters. ``mode``: ``vector``, ``bm25`` or ``hybrid``
    (default ``retrieval.mode``). ``filters``: indexer's mapping, or ``MetadataFilters`` of ``==``
    filters. The notice of the last retrieval (a keyword index being rebuilt, filters that match no
    file) is ``last_notice``."""

    def __init__(
        self,
        engine: QueryEngine,
        similarity_top_k: int | None = None,
        mode: RetrievalMode | None = None,
        filters: Mapping[str, FilterValue] | MetadataFilters | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        super().__init__(callback_manager=callback_manager)
        self.engine = engine
        self.similarity_top_k = similarity_top_k
        self.mode = mode
        self.filters = indexer_filters(filters)
        self.last_notice: str | None = None

    def with_top_k(self, similarity_top_k: int) -> IndexerRetriever:
        """The same retriever, for another number of passages."""
        return IndexerRetriever(
            self.engine, similarity_top_k, self.mode, self.filters, callback_manager=self.callback_manager
        )

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        passages = self.engine.retrieve(
            query_bundle.query_str, self.similarity_top_k, filters=self.filters, mode=self.mode
        )
        self.last_notice = passages.notice
        return [source_node(s) for s in passages]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


def answer_metadata(answer: Answer | AnswerStream) -> dict[str, Any]:
    """What ``indexer query --json`` tells beside the answer and sources."""
    # A stream not consumed yet has neither counts nor a reason to have stopped.
    done = isinstance(answer, Answer) or answer.finished
    usage = answer.usage if done else None
    data: dict[str, Any] = {
        "notice": answer.notice,
        "question": answer.question,
        "citations": answer.citations,
        "stopped": answer.stopped,
        "finish_reason": answer.finish_reason if done and answer.answer is not None else None,
        "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        if usage is not None
        else None,
    }
    for name in _OPTIONAL_ANSWER_FIELDS:
        if hasattr(answer, name):
            data[name] = getattr(answer, name)
    return data


class IndexerQueryEngine(BaseQueryEngine):
    """``Indexer.query`` (or ``Indexer.stream`` with ``streaming=True``) as a LlamaIndex query engine.

    ``query()`` returns a ``Response``: ``response`` is the answer (None without an LLM),
    ``source_nodes`` the passages the prompt held, in rank order, so ``[n]`` in the answer is
    ``source_nodes[n - 1]`` (passages dropped to fit ``llm.n_ctx`` are not among them), and
    ``metadata`` holds ``notice``, ``question`` (the question as answered), ``citations`` (the
    numbers cited, in order of first use), ``stopped``, ``finish_reason`` and ``usage``.

    With ``streaming=True``, a ``StreamingResponse`` whose ``response_gen`` yields the answer's
    text as the model generates it (nothing without an LLM); ``source_nodes`` are known before the
    first piece, and ``metadata`` is completed (``citations``, ``usage``, ...) once the generator
    is consumed. ``aquery`` runs the same in a worker thread and returns the same types."""

    def __init__(
        self,
        engine: QueryEngine,
        *,
        streaming: bool = False,
        similarity_top_k: int | None = None,
        mode: RetrievalMode | None = None,
        filters: Mapping[str, FilterValue] | MetadataFilters | None = None,
        max_tokens: int | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        super().__init__(callback_manager)
        self.engine = engine
        self.streaming = streaming
        self.max_tokens = max_tokens
        self.retriever = IndexerRetriever(engine, similarity_top_k, mode, filters, callback_manager)

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {}

    def retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self.retriever.retrieve(query_bundle)

    def _query(self, query_bundle: QueryBundle) -> Response | StreamingResponse:
        retriever = self.retriever
        stream = self.engine.stream(
            query_bundle.query_str,
            retriever.similarity_top_k,
            filters=retriever.filters,
            mode=retriever.mode,
            max_tokens=self.max_tokens,
        )
        nodes = [source_node(s) for s in stream.sources]
        if not self.streaming:
            answer = stream.result()
            return Response(response=answer.answer, source_nodes=nodes, metadata=answer_metadata(answer))
        metadata = answer_metadata(stream)

        def pieces() -> Generator[str, None, None]:
            try:
                yield from stream
            finally:
                stream.close()  # a generator dropped early stops the model
                metadata.update(answer_metadata(stream))

        return StreamingResponse(response_gen=pieces(), source_nodes=nodes, metadata=metadata)

    async def _aquery(self, query_bundle: QueryBundle) -> Response | StreamingResponse:
        # LlamaIndex runs several at once (BatchEvalRunner's workers): llama.cpp generates one
        # answer at a time, so a stream waits for the model at its first piece.
        lock = _generation_lock(self.engine)

        def run() -> Response | StreamingResponse:
            with lock:
                result = self._query(query_bundle)
            if isinstance(result, StreamingResponse):
                result.response_gen = _holding(lock, result.response_gen)
            return result

        return await asyncio.to_thread(run)


class IndexerChatEngine(BaseChatEngine):
    """A conversation as ``indexer chat`` holds it: each follow-up is condensed with the last
    turns (at most six exchanges) into a standalone question (``QueryEngine.condense``: by the LLM,
    or without one by prepending the last user question), which retrieval and the answer use.

    ``chat`` returns an ``AgentChatResponse`` and ``stream_chat`` a ``StreamingAgentChatResponse``
    (iterate ``response_gen``); their ``source_nodes`` are the passages the answer may cite, as
    ``IndexerQueryEngine`` gives them, and ``metadata`` (``AgentChatResponse`` only) what its
    ``Response.metadata`` holds. A turn joins ``chat_history`` once its answer is complete. Without
    an LLM, the response is empty and the turn's notice says why (``last_notice``)."""

    def __init__(
        self,
        engine: QueryEngine,
        *,
        similarity_top_k: int | None = None,
        mode: RetrievalMode | None = None,
        filters: Mapping[str, FilterValue] | MetadataFilters | None = None,
        chat_history: Sequence[ChatMessage] | None = None,
    ) -> None:
        self.engine = engine
        self.similarity_top_k = similarity_top_k
        self.mode = mode
        self.filters = indexer_filters(filters)
        self._history: list[tuple[str, str]] = [_turn(m) for m in chat_history or ()]
        self.last_notice: str | None = None

    @property
    def chat_history(self) -> list[ChatMessage]:
        return [ChatMessage(role=MessageRole(role), content=text) for role, text in self._history]

    def reset(self) -> None:
        self._history.clear()
        self.last_notice = None

    def _ask(self, message: str, chat_history: Sequence[ChatMessage] | None) -> AnswerStream:
        if chat_history is not None:
            self._history = [_turn(m) for m in chat_history]
        stream = self.engine.stream(
            message,
            self.similarity_top_k,
            filters=self.filters,
            history=self._history[-2 * MAX_TURNS :],
            mode=self.mode,
        )
        self.last_notice = stream.notice
        return stream

    def _remember(self, message: str, stream: AnswerStream) -> None:
        self.last_notice = stream.notice
        self._history.append(("user", message))
        if stream.answer:
            self._history.append(("assistant", stream.answer))

    def chat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        stream = self._ask(message, chat_history)
        answer = stream.result()
        self._remember(message, stream)
        return AgentChatResponse(
            response=answer.answer or "",
            source_nodes=[source_node(s) for s in answer.sources],
            metadata=answer_metadata(answer),
        )

    def stream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> StreamingAgentChatResponse:
        stream = self._ask(message, chat_history)
        return StreamingAgentChatResponse(
            chat_stream=self._deltas(message, stream),
            source_nodes=[source_node(s) for s in stream.sources],
            # The deltas are read straight from the stream; the history is written at its end.
            is_writing_to_memory=False,
        )

    def _deltas(self, message: str, stream: AnswerStream) -> ChatResponseGen:
        text = ""
        try:
            for piece in stream:
                text += piece
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece)
        finally:
            stream.close()
            self._remember(message, stream)

    async def achat(self, message: str, chat_history: list[ChatMessage] | None = None) -> AgentChatResponse:
        lock = _generation_lock(self.engine)

        def run() -> AgentChatResponse:
            with lock:
                return self.chat(message, chat_history)

        return await asyncio.to_thread(run)

    async def astream_chat(
        self, message: str, chat_history: list[ChatMessage] | None = None
    ) -> StreamingAgentChatResponse:
        lock = _generation_lock(self.engine)

        def ask() -> AnswerStream:
            with lock:
                return self._ask(message, chat_history)

        stream = await asyncio.to_thread(ask)
        return StreamingAgentChatResponse(
            achat_stream=_in_thread(_holding(lock, self._deltas(message, stream))),
            source_nodes=[source_node(s) for s in stream.sources],
            is_writing_to_memory=False,
        )


# One lock per set of components (one model), for the async paths, where LlamaIndex runs calls
# concurrently; the synchronous ones behave as ``Indexer.query`` does.
_LOCKS: weakref.WeakKeyDictionary[Components, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _generation_lock(engine: QueryEngine) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(engine.components, threading.Lock())


def _holding(lock: threading.Lock, pieces: Iterator[T]) -> Generator[T, None, None]:
    """``pieces`` with ``lock`` held from the first piece to the end (or to the generator's close):
    a stream never started holds nothing."""
    with lock:
        yield from pieces


async def _in_thread(pieces: Iterator[Any]) -> AsyncGenerator[Any, None]:
    """A blocking generator's items, each produced in a worker thread so the event loop runs on."""
    done = object()
    while True:
        item = await asyncio.to_thread(next, pieces, done)
        if item is done:
            return
        yield item


class ChatModelLLM(CustomLLM):
    """indexer's LLM (``Components.llm``: a GGUF run by llama.cpp, or an OpenAI-compatible server)
    as a LlamaIndex ``LLM``.

    Every call goes through indexer's ``ChatModel``: ``chat`` and ``stream_chat`` render the
    messages with the model's own chat template (or ``llm.chat_template``), with marker-safe
    tokenization, and stop at the template's end-of-turn tokens and ``llm.stop``; ``complete`` and
    ``stream_complete`` send the prompt as one user message through the same template (LlamaIndex's
    ``LlamaCPP.complete`` would format it generically). ``max_tokens`` caps a reply (default and
    ceiling ``llm.max_new_tokens``); ``ChatResponse.additional_kwargs["usage"]`` counts its tokens."""

    context_window: int = 4096
    num_output: int = 256
    model_name: str = "indexer"
    _model: ChatModel = PrivateAttr()

    def __init__(self, model: ChatModel, *, max_new_tokens: int, model_name: str = "indexer") -> None:
        super().__init__(context_window=model.n_ctx, num_output=max_new_tokens, model_name=model_name)
        self._model = model

    @classmethod
    def class_name(cls) -> str:
        return "indexer_chat_model"

    @property
    def chat_model(self) -> ChatModel:
        """indexer's model underneath (``ChatLlamaCPP`` or ``OpenAILikeLLM``)."""
        return self._model

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.num_output,
            is_chat_model=True,
            model_name=self.model_name,
        )

    def _tokens(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> Any:
        cap = self.num_output
        max_tokens = min(int(kwargs.pop("max_tokens", None) or cap), cap)
        return self._model.stream_tokens(list(messages), max_tokens=max_tokens, **kwargs)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        tokens = self._tokens(messages, kwargs)
        text = "".join(tokens)
        usage = tokens.usage
        return ChatResponse(
            message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
            additional_kwargs={
                "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens},
                "finish_reason": tokens.finish_reason,
            },
        )

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        tokens = self._tokens(messages, kwargs)

        def gen() -> ChatResponseGen:
            text = ""
            try:
                for piece in tokens:
                    text += piece
                    yield ChatResponse(
                        message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece
                    )
            finally:
                tokens.close()

        return gen()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        return _in_thread(self.stream_chat(messages, **kwargs))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        reply = self.chat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs)
        return CompletionResponse(text=reply.message.content or "", additional_kwargs=reply.additional_kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        chats = self.stream_chat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs)

        def gen() -> CompletionResponseGen:
            for chunk in chats:
                yield CompletionResponse(text=chunk.message.content or "", delta=chunk.delta)

        return gen()
