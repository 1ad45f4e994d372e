"""Query: retrieve passages for a question and answer it with the local LLM, citing sources."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from indexer.components import Components
from indexer.config.models import Config
from indexer.errors import IndexerError, ModelError
from indexer.index.manifest import Manifest, check_compatible
from indexer.index.store import DOC_ID, Hit

_CITATION_KEYS = ("page", "section", "title", "start_char", "end_char", "chunk")


@dataclass
class Source:
    rank: int
    score: float
    file: str
    doc_id: str
    text: str
    chunk_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def citation(self) -> str:
        page = self.metadata.get("page")
        return f"{self.file}, page {page}" if page else self.file

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "score": round(self.score, 6),
            "file": self.file,
            "doc_id": self.doc_id,
            "text": self.text,
            "chunk_id": self.chunk_id,
            **{k: v for k, v in self.metadata.items() if k in _CITATION_KEYS},
        }


@dataclass
class Answer:
    answer: str | None
    sources: list[Source]
    notice: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"answer": self.answer, "sources": [s.to_dict() for s in self.sources]}
        if self.notice:
            data["notice"] = self.notice
        return data


class AnswerStream:
    """Tokens of an answer as they are generated; ``sources`` are known before the first token,
    and ``answer`` holds the whole text once the stream is consumed."""

    def __init__(self, tokens: Iterator[str] | None, sources: list[Source], notice: str | None) -> None:
        self._tokens = tokens
        self.sources = sources
        self.notice = notice
        self.answer: str | None = None if tokens is None else ""
        self.finished = tokens is None

    def __iter__(self) -> Iterator[str]:
        if self._tokens is None:
            return
        for token in self._tokens:
            self.answer = (self.answer or "") + token
            yield token
        self.finished = True

    def close(self) -> None:
        if self._tokens is not None and hasattr(self._tokens, "close"):
            self._tokens.close()

    def result(self) -> Answer:
        for _ in self:
            pass
        return Answer(answer=self.answer, sources=self.sources, notice=self.notice)


class QueryEngine:
    def __init__(self, config: Config, components: Components) -> None:
        self.config = config
        self.components = components
        self._manifest: Manifest | None = None

    def manifest(self) -> Manifest:
        """The index's manifest, checked against the config once per engine."""
        if self._manifest is None:
            manifest = self.components.manifest_file.load()
            if manifest is None:
                raise IndexerError(
                    f"no index yet at {self.components.manifest_file.path.parent}: "
                    "run `indexer build CONFIG` first"
                )
            check_compatible(manifest, self.components.embedding_identity_dict(), None)
            self._manifest = manifest
        return self._manifest

    def retrieve(self, question: str, top_k: int | None = None) -> list[Source]:
        question = _checked(question)
        self.manifest()
        store = self.components.chunk_store(create=False)
        if store is None:
            raise IndexerError(
                f"the index's collection {self.config.vector_store.collection!r} is missing: "
                "run `indexer build CONFIG --rebuild`"
            )
        vector = self.components.embed_model.get_query_embedding(question)
        hits = store.search(vector, top_k or self.config.query.top_k)
        return [_source(rank, hit) for rank, hit in enumerate(hits, start=1)]

    def stream(self, question: str, top_k: int | None = None) -> AnswerStream:
        sources = self.retrieve(question, top_k)
        llm = self.components.llm
        if llm is None:
            return AnswerStream(None, sources, self.components.llm_notice)
        messages, kept = self._fit_to_context(question, sources)
        notice = None
        if len(kept) < len(sources):
            notice = (
                f"{len(sources) - len(kept)} lowest-ranked passage(s) left out of the prompt to fit "
                f"llm.n_ctx ({self.config.llm.n_ctx} tokens)"
            )
        return AnswerStream(llm.stream_tokens(messages), kept, notice)

    def query(self, question: str, top_k: int | None = None) -> Answer:
        return self.stream(question, top_k).result()

    def messages(self, question: str, sources: list[Source]) -> list[ChatMessage]:
        context = "\n\n".join(f"[{s.rank}] ({s.citation()})\n{s.text}" for s in sources)
        # str.replace, not str.format: questions and passages may contain braces.
        user = self.config.query.qa_prompt.replace("{context}", context).replace("{question}", question)
        return [
            ChatMessage(role=MessageRole.SYSTEM, content=self.config.query.system_prompt),
            ChatMessage(role=MessageRole.USER, content=user),
        ]

    def _fit_to_context(self, question: str, sources: list[Source]) -> tuple[list[ChatMessage], list[Source]]:
        """Drop the lowest-ranked passages until prompt + answer fit the context window."""
        llm = self.components.llm
        assert llm is not None
        budget = self.config.llm.n_ctx - self.config.llm.max_new_tokens
        kept = list(sources)
        while True:
            messages = self.messages(question, kept)
            if llm.count_tokens(messages) <= budget:
                return messages, kept
            if len(kept) <= 1:
                raise ModelError(
                    f"even the best passage does not fit llm.n_ctx ({self.config.llm.n_ctx} tokens) "
                    f"with llm.max_new_tokens ({self.config.llm.max_new_tokens}) left for the answer: "
                    "raise llm.n_ctx, or lower chunking.chunk_size or llm.max_new_tokens"
                )
            kept.pop()


def _checked(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise IndexerError("the question is empty")
    return question.strip()


def _source(rank: int, hit: Hit) -> Source:
    meta = hit.metadata
    doc_id = str(meta.get(DOC_ID, ""))
    return Source(
        rank=rank,
        score=hit.score,
        file=str(meta.get("file", doc_id)),
        doc_id=doc_id,
        text=hit.text,
        chunk_id=hit.id,
        metadata=meta,
    )
