"""The index as LlamaIndex's vector store: ``ChromaVectorStore`` over the live collection.

Chunks are written in the layout ``ChromaVectorStore.add`` writes (``store.node_record``), so the
stock class reads them. Only queries through ``CommittedChromaVectorStore`` follow indexer's
committed view (``store.Committed``): a build writes new versions of documents before its manifest
names them, and removes old ones after, so the plain class may see both for a moment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from indexer.errors import StoreError
from indexer.index.store import Committed

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.indices.vector_store import VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from indexer.index.index import Index


def _holds(committed: Committed | None, metadata: dict[str, Any]) -> bool:
    return committed is None or committed.holds_metadata(metadata)


def _collection(index: Index) -> Any:
    store = index.chunk_store(create=False)
    if store is None:
        raise StoreError(f"there is no index at {index.location} yet: run `indexer build CONFIG` first")
    return store._collection


def vector_store(index: Index) -> ChromaVectorStore:
    """LlamaIndex's ``ChromaVectorStore`` over the live collection: every chunk in it, committed
    or not (``committed_vector_store`` shows only committed ones)."""
    from llama_index.vector_stores.chroma import ChromaVectorStore

    return ChromaVectorStore(chroma_collection=_collection(index))


def committed_vector_store(index: Index) -> ChromaVectorStore:
    """A ``ChromaVectorStore`` over the live collection whose queries show only the chunks the
    manifest commits, as indexer's own searches do."""
    return _committed_class()(chroma_collection=_collection(index), committed=index.committed)


def vector_store_index(index: Index, embed_model: BaseEmbedding) -> VectorStoreIndex:
    """A ``VectorStoreIndex`` over the committed chunks of the live collection, embedding questions
    with ``embed_model`` (never LlamaIndex's global ``Settings``)."""
    from llama_index.core import VectorStoreIndex

    return VectorStoreIndex.from_vector_store(committed_vector_store(index), embed_model=embed_model)


_CLASS: type[ChromaVectorStore] | None = None


def _committed_class() -> type[ChromaVectorStore]:
    """The subclass, made on first use: LlamaIndex is not imported until then."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.vector_stores.types import (
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryResult,
    )
    from llama_index.vector_stores.chroma import ChromaVectorStore

    class CommittedChromaVectorStore(ChromaVectorStore):
        """``ChromaVectorStore`` that hides the chunks the manifest does not commit. A query asks
        Chroma for more results until it has ``similarity_top_k`` committed ones or the collection
        runs out, as ``ChunkStore.search`` does; outside a build the first answer suffices."""

        _committed: Callable[[], Committed | None] = PrivateAttr()

        def __init__(self, *, committed: Callable[[], Committed | None], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._committed = committed

        @classmethod
        def class_name(cls) -> str:
            return "CommittedChromaVectorStore"

        def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
            committed = self._committed()
            top_k = query.similarity_top_k
            if committed is None or top_k <= 0:
                return super().query(query, **kwargs)
            wanted = top_k
            while True:
                asked = dataclasses.replace(query, similarity_top_k=wanted)
                result = super().query(asked, **dict(kwargs))  # Chroma's query pops from kwargs
                nodes = result.nodes or []
                kept = [i for i, node in enumerate(nodes) if _holds(committed, node.metadata)][:top_k]
                if len(kept) >= top_k or len(nodes) < wanted:
                    return VectorStoreQueryResult(
                        nodes=[nodes[i] for i in kept],
                        similarities=[result.similarities[i] for i in kept] if result.similarities else None,
                        ids=[result.ids[i] for i in kept] if result.ids else None,
                    )
                wanted *= 4

        def get_nodes(  # type: ignore[override]  # ChromaVectorStore's own signature
            self, node_ids: list[str] | None, filters: list[MetadataFilters] | None = None
        ) -> list[Any]:
            committed = self._committed()
            found = super().get_nodes(node_ids, filters)
            return [n for n in found if _holds(committed, n.metadata)]

    _CLASS = CommittedChromaVectorStore
    return _CLASS
