"""Chunk storage on a Chroma collection: batched writes, per-document replacement, search.

We talk to the collection directly rather than through LlamaIndex's ``ChromaVectorStore``: that
class batches writes by a fixed constant instead of the server's ``get_max_batch_size()``, stores a
JSON copy of every node in the metadata, and reports ``exp(-distance)`` as the score, which is not
the cosine similarity users expect to read or to cut off at.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from indexer.errors import StoreError

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

# Metadata keys every chunk carries; they are the citation a user reads and the keys sync runs on.
DOC_ID = "doc_id"
FILE_HASH = "file_hash"
CHUNK_INDEX = "chunk"


@dataclass
class Chunk:
    id: str
    text: str
    metadata: dict[str, Any]
    embedding: list[float] | None = None


@dataclass
class Hit:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0


class ChunkStore:
    def __init__(self, collection: Collection, max_batch_size: int) -> None:
        self._collection = collection
        self._max_batch = max(1, max_batch_size)

    @property
    def max_batch_size(self) -> int:
        return self._max_batch

    def count(self) -> int:
        return self._collection.count()

    def add(self, chunks: Sequence[Chunk]) -> None:
        for batch in _batches(chunks, self._max_batch):
            self._collection.upsert(
                ids=[c.id for c in batch],
                documents=[c.text for c in batch],
                metadatas=[_flat(c.metadata) for c in batch],
                embeddings=[c.embedding for c in batch],  # type: ignore[misc]
            )

    def delete_document(self, doc_id: str, *, keep_hash: str | None = None) -> None:
        """Remove a document's chunks; with ``keep_hash``, only those of other versions."""
        where: dict[str, Any] = {DOC_ID: doc_id}
        if keep_hash is not None:
            where = {"$and": [{DOC_ID: doc_id}, {FILE_HASH: {"$ne": keep_hash}}]}
        self._collection.delete(where=where)  # type: ignore[arg-type]

    def search(
        self, embedding: Sequence[float], top_k: int, where: dict[str, Any] | None = None
    ) -> list[Hit]:
        if top_k <= 0 or self.count() == 0:
            return []
        try:
            result = self._collection.query(
                query_embeddings=[list(embedding)],
                n_results=top_k,
                where=where,  # type: ignore[arg-type]
                include=["documents", "metadatas", "distances"],  # type: ignore[list-item]
            )
        except Exception as exc:
            raise StoreError(f"vector search failed: {type(exc).__name__}: {exc}") from None
        ids = result["ids"][0]
        docs = (result["documents"] or [[]])[0]
        metas = (result["metadatas"] or [[]])[0]
        dists = (result["distances"] or [[]])[0]
        # Collections are created with cosine space, where distance = 1 - cosine similarity.
        return [
            Hit(id=i, text=d or "", metadata=dict(m or {}), score=1.0 - float(dist))
            for i, d, m, dist in zip(ids, docs, metas, dists, strict=True)
        ]

    def iter_chunks(self) -> Iterator[Hit]:
        """Every stored chunk (text and metadata, no vector), page by page."""
        offset = 0
        while True:
            try:
                page = self._collection.get(
                    include=["documents", "metadatas"],  # type: ignore[list-item]
                    limit=self._max_batch,
                    offset=offset,
                )
            except Exception as exc:
                raise StoreError(f"reading chunks failed: {type(exc).__name__}: {exc}") from None
            ids = page["ids"]
            if not ids:
                return
            docs = page["documents"] or [""] * len(ids)
            metas = page["metadatas"] or [{}] * len(ids)
            for i, d, m in zip(ids, docs, metas, strict=True):
                yield Hit(id=i, text=d or "", metadata=dict(m or {}))
            offset += len(ids)


def _flat(metadata: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """Chroma accepts only scalar metadata; drop Nones and stringify the rest."""
    flat: dict[str, str | int | float | bool] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        flat[key] = value if isinstance(value, str | int | float | bool) else str(value)
    return flat


def _batches(items: Sequence[Chunk], size: int) -> Iterator[Sequence[Chunk]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
