"""The Python API: one object per config, over the same core as the CLI and the HTTP server."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from indexer.components import Components
from indexer.config import Config, load_config
from indexer.index.index import Index

if TYPE_CHECKING:
    # The query side imports LlamaIndex's chat types (1.5 s): a build never needs them.
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.llms import LLM
    from llama_index.core.vector_stores.types import MetadataFilters

    from indexer.components.embedding import EmbeddingIdentity
    from indexer.config.models import RetrievalMode
    from indexer.index.store import Hit
    from indexer.ingestion.pipeline import BuildSummary
    from indexer.ingestion.status import IndexStatus
    from indexer.query.chat import ChatSession
    from indexer.query.engine import Answer, AnswerStream, History, Passages, QueryEngine
    from indexer.query.filters import FilterValue
    from indexer.query.llama_index import (
        IndexerChatEngine,
        IndexerQueryEngine,
        IndexerRetriever,
    )

if TYPE_CHECKING:  # LlamaIndex's own objects, made on request only
    from llama_index.core.indices.vector_store import VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore


class Indexer:
    """Build and query the index a config describes.

    >>> ix = Indexer.from_config("configs/sample.yaml", overrides={"query.top_k": 3})
    >>> ix.build()
    >>> ix.query("How often should the desiccant pack in the mast be replaced?").answer
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.components = Components(config)
        self.index = Index(config.vector_store)

    @cached_property
    def _engine(self) -> QueryEngine:
        from indexer.query.engine import QueryEngine

        return QueryEngine(self.components, self.index)

    @classmethod
    def from_config(
        cls, path: str | os.PathLike[str], overrides: Mapping[str, Any] | Iterable[str] | None = None
    ) -> Indexer:
        return cls(load_config(path, overrides))

    def build(
        self,
        *,
        rebuild: bool = False,
        dry_run: bool = False,
        show_progress: bool = False,
        strict: bool = False,
    ) -> BuildSummary:
        # Here, not at the top: a question never needs the build's modules.
        from indexer.ingestion.pipeline import build_index

        return build_index(
            self.components,
            self.index,
            rebuild=rebuild,
            dry_run=dry_run,
            strict=strict,
            show_progress=show_progress,
        )

    def status(self) -> IndexStatus:
        """The manifest, counts, and which files are new, changed or deleted since the last build."""
        from indexer.ingestion.status import index_status

        return index_status(self.config, self.index)

    # -- what the ways in (HTTP service, MCP) need, so that they need nothing else -------------

    def warm_up(self) -> None:
        """Load everything a first question would (embedder, manifest, LLM), so that a server
        fails now, with an ``IndexerError``, if the index cannot be served."""
        self.retrieve("warm-up", top_k=1)
        _ = self.components.llm

    @property
    def has_llm(self) -> bool:
        """Whether answers come from an LLM (loading it on first use); see ``llm_notice``."""
        return self.components.llm is not None

    @property
    def embedding_identity(self) -> EmbeddingIdentity:
        """The model questions are embedded with: its ``name`` and ``dimension``."""
        return self.components.query_embedder.identity

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Vectors for ``texts`` from the index's own embedding model (as passages are embedded),
        and the tokens they took."""
        embedder = self.components.embedder
        vectors = embedder.embed(texts)  # as a build embeds passages
        tokens = sum(len(embedder.tokenize(text)) for text in texts)
        return [list(map(float, v)) for v in vectors], tokens

    def info(self, *, reveal_paths: bool = True) -> dict[str, Any]:
        """The built index described: where it lives, its live collection, counts (vectors
        included), whether an LLM answers, and the manifest. Without ``reveal_paths`` the store's
        folder is named by its last part. ``IndexerError`` when nothing is built yet."""
        from indexer.errors import IndexerError
        from indexer.index.chroma import describe

        manifest = self.index.current()
        if manifest is None:
            raise IndexerError("the index has no manifest: run `indexer build CONFIG`")

        def count() -> int:
            store = self.index.chunk_store(create=False)
            return store.count() if store is not None else 0

        return {
            "vector_store": describe(self.config.vector_store, reveal_paths=reveal_paths),
            # The live collection (NAME-gN after a --rebuild), not the configured base name.
            "collection": self.index.collection_name(),
            "counts": {**manifest.counts(), "vectors": self.index.reading(count)},
            "llm": self.has_llm,
            "manifest": manifest.model_dump(mode="json"),
        }

    def indexed_files(self) -> dict[str, int]:
        """Each indexed file's passage count, by its path relative to ``data.input_dir``, sorted;
        empty before the first build."""
        manifest = self.index.current()
        files = manifest.files if manifest is not None else {}
        return {doc_id: files[doc_id].chunks for doc_id in sorted(files)}

    def file_passages(self, path: str) -> list[Hit] | None:
        """An indexed file's passages in reading order, by its path relative to
        ``data.input_dir``; None when it is not an indexed file."""
        manifest = self.index.current()
        if manifest is None or path not in manifest.files:
            return None

        def passages() -> list[Hit]:
            store = self.index.chunk_store(create=False)
            return store.document(path) if store is not None else []

        return self.index.reading(passages)

    def retrieve(
        self,
        question: str,
        top_k: int | None = None,
        filters: Mapping[str, FilterValue] | None = None,
        mode: RetrievalMode | None = None,
    ) -> Passages:
        """The ``top_k`` best passages (default ``query.top_k``), ranked 1..n: exactly that many when
        the index holds enough that pass the filters and cutoff. ``filters``: ``{"path": "guides/*",
        "type": "pdf", "page": 3}`` (added to the config's ``retrieval.filters``). ``mode``:
        ``vector``, ``bm25`` or ``hybrid`` for this question (default ``retrieval.mode``). A list
        of ``Source``; its ``notice`` says what the reader should know about them, or is None."""
        return self._engine.retrieve(question, top_k, filters=filters, mode=mode)

    def query(
        self,
        question: str,
        top_k: int | None = None,
        filters: Mapping[str, FilterValue] | None = None,
        history: History | None = None,
        mode: RetrievalMode | None = None,
        max_tokens: int | None = None,
    ) -> Answer:
        """Retrieve, then answer with the LLM, citing passages by rank. ``history``: earlier chat
        turns as ``(role, text)`` pairs; the question is first rewritten into a standalone one,
        which retrieval and the answer use. ``max_tokens`` caps the answer's tokens (at most
        ``llm.max_new_tokens``); ``usage`` counts them. Without an LLM, ``answer`` is None and
        ``notice`` says why; an answer stopped because it ran away (an invented turn, a loop)
        carries a ``notice`` saying so."""
        return self._engine.query(
            question, top_k, filters=filters, history=history, mode=mode, max_tokens=max_tokens
        )

    def stream(
        self,
        question: str,
        top_k: int | None = None,
        filters: Mapping[str, FilterValue] | None = None,
        history: History | None = None,
        mode: RetrievalMode | None = None,
        max_tokens: int | None = None,
    ) -> AnswerStream:
        """As ``query``, but the answer's text is yielded as it is generated: ``sources`` are
        known before the first piece, ``answer`` holds the whole text once the stream is
        consumed (with ``usage`` and ``finish_reason``), and ``close()`` stops generation."""
        return self._engine.stream(
            question, top_k, filters=filters, history=history, mode=mode, max_tokens=max_tokens
        )

    def chat(self, top_k: int | None = None, filters: Mapping[str, FilterValue] | None = None) -> ChatSession:
        """A multi-turn session: ``session.ask(q)`` streams, ``session.remember(q, stream)``."""
        from indexer.query.chat import ChatSession

        return ChatSession(self._engine, top_k=top_k, filters=filters)

    # LlamaIndex objects over the same engine (indexer/query/llama_index.py says where they
    # differ from LlamaIndex's defaults).

    def as_retriever(
        self,
        similarity_top_k: int | None = None,
        mode: RetrievalMode | None = None,
        filters: Mapping[str, FilterValue] | MetadataFilters | None = None,
        **kwargs: Any,
    ) -> IndexerRetriever:
        """A LlamaIndex ``BaseRetriever`` over ``retrieve``: ``NodeWithScore`` of ``TextNode``s with
        the chunk id, text and metadata, the file's doc id as ``ref_doc_id``, and indexer's score
        (cosine, BM25 or fused; not LlamaIndex's ``exp(-distance)``). ``filters``: indexer's
        mapping, or ``MetadataFilters`` of ``==`` filters joined by AND. ``kwargs``:
        ``callback_manager``."""
        from indexer.query.llama_index import IndexerRetriever

        return IndexerRetriever(self._engine, similarity_top_k, mode, filters, **kwargs)

    def as_query_engine(self, streaming: bool = False, **kwargs: Any) -> IndexerQueryEngine:
        """A LlamaIndex ``BaseQueryEngine`` over ``query`` (``stream`` with ``streaming=True``).
        ``Response.source_nodes`` are the passages of the prompt in rank order, so ``[n]`` is
        ``source_nodes[n - 1]``; ``metadata`` holds ``notice``, ``citations``, ``usage``, ... Without
        an LLM, ``response`` is None and ``metadata["notice"]`` says why. ``kwargs``:
        ``similarity_top_k``, ``mode``, ``filters``, ``max_tokens``, ``callback_manager``."""
        from indexer.query.llama_index import IndexerQueryEngine

        return IndexerQueryEngine(self._engine, streaming=streaming, **kwargs)

    def as_chat_engine(self, **kwargs: Any) -> IndexerChatEngine:
        """A LlamaIndex ``BaseChatEngine`` that condenses each follow-up with the conversation into
        a standalone question, as ``indexer chat`` does. ``kwargs``: ``similarity_top_k``,
        ``mode``, ``filters``, ``chat_history``."""
        from indexer.query.llama_index import IndexerChatEngine

        return IndexerChatEngine(self._engine, **kwargs)

    @cached_property
    def llm(self) -> LLM | None:
        """The configured LLM as a LlamaIndex ``LLM`` (chat and completion through the model's
        chat template and stop tokens), or None without one (``llm_notice`` says why). With
        ``llm.provider: llama_index``, the configured LlamaIndex object itself."""
        model = self.components.llm
        if model is None:
            return None
        from indexer.components.llama_index_llm import LlamaIndexChatModel
        from indexer.query.llama_index import ChatModelLLM

        if isinstance(model, LlamaIndexChatModel):
            return model.llm  # type: ignore[no-any-return]

        path = self.config.llm.model_path
        name = self.config.llm.model or (os.path.basename(path) if path else self.config.llm.provider)
        return ChatModelLLM(model, max_new_tokens=self.config.llm.max_new_tokens, model_name=name)

    @property
    def embed_model(self) -> BaseEmbedding:
        """The passage embedding model as a LlamaIndex ``BaseEmbedding`` (questions may be embedded
        by another backend of the same model: ``embedding.query_backend``); with
        ``embedding.provider: llama_index``, the configured object itself."""
        return self.components.embedder.llama_index

    @property
    def llm_notice(self) -> str | None:
        """Why there is no LLM (retrieval only), once ``llm`` has been resolved."""
        return self.components.llm_notice

    @property
    def vector_store(self) -> ChromaVectorStore:
        """LlamaIndex's ``ChromaVectorStore`` over the live collection (the one the manifest names;
        a new one after each ``--rebuild``). It shows every chunk stored, also those of a build in
        progress that the manifest does not commit yet; ``as_vector_store_index()`` hides them."""
        from indexer.index.llama_store import vector_store

        return vector_store(self.index)

    def as_vector_store_index(self) -> VectorStoreIndex:
        """A LlamaIndex ``VectorStoreIndex`` over the live collection that shows only committed
        chunks, as indexer's own searches do, with the config's passage embedding model. Its
        ``as_retriever()`` needs no LLM; pass ``llm=`` to its ``as_query_engine()`` (LlamaIndex's
        own engine: plain vector search, without indexer's fusion, filters or context fitting),
        or use ``Indexer.query``."""
        from indexer.index.llama_store import vector_store_index

        return vector_store_index(self.index, self.components.embedder.llama_index)


def evaluate(
    target: str | os.PathLike[str],
    *,
    datasets: Iterable[str | os.PathLike[str]] = (),
    overrides: Mapping[str, Any] | None = None,
    out: str | os.PathLike[str] = "runs",
    chart: bool = True,
    **options: Any,
) -> Any:
    """Evaluate a config on ``datasets``, or every variant of an eval spec file, and save the run
    under ``out``. Options are those of ``indexer eval`` (``metrics``, ``judge``, ``answers``,
    ``limit``, ``fail_under``, ...). Returns an ``EvalOutcome``: ``.run_dir``, ``.summary``,
    ``.failures`` (the ``fail_under`` checks that failed).

    >>> outcome = evaluate("configs/sample.yaml", datasets=["data/sample_questions.jsonl"])
    >>> outcome.summary["results"][0]["summary"]["ndcg@10"]
    """
    from indexer.eval.session import evaluate as run_evaluation
    from indexer.eval.session import make_spec

    spec = make_spec(target, datasets=list(datasets), overrides=overrides, **options)
    return run_evaluation(spec, out=out, chart=chart)
