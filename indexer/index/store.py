"""Chunk storage on a Chroma collection: batched writes, per-document replacement, search.

Search shows only committed chunks: those whose (document, file hash) the manifest names. While a
build runs, the collection also holds chunks of versions not committed yet and old versions not
yet removed; hiding them gives a query during a build the last committed index, consistently.

We talk to the collection directly rather than through LlamaIndex's ``ChromaVectorStore``: that
class batches writes by a fixed constant instead of the server's ``get_max_batch_size()``, and
reports ``exp(-distance)`` as the score, which is not the cosine similarity users expect to read or
to cut off at. But we write the records ``ChromaVectorStore.add`` writes (``node_record``): the
chunk's text as Chroma's document, and LlamaIndex's ``node_to_metadata_dict`` as the metadata (the
flat citation metadata, the node as JSON in ``_node_content``, ``_node_type``, and the source
document in ``doc_id``, ``document_id`` and ``ref_doc_id``). So plain chromadb reads the text, and
``ChromaVectorStore`` reads back each chunk as the ``TextNode`` with its id, text, metadata,
offsets and ``ref_doc_id`` (``index/llama_store.py``). LlamaIndex's legacy read path (no
``_node_content``) would also do, but it is marked deprecated there, and the standard layout costs
little: building the records (``node_record``) takes 0.11 ms a chunk on the loaded machine below
(5% of a write), and a write without documents but with the node JSON takes about what the layout
before took (below).

Chroma indexes every document in an SQLite FTS5 trigram table, which we never query (keyword
search has its own index, ``index/keyword.py``), and 1.5.9 ignores a schema that turns that index
off on a local database. ``benchmarks/build.py`` times a 2,048-chunk write in each layout, taking
turns: 4.76 s with documents, 2.97 s with ``vector_store.store_documents: false`` (the text only
inside ``_node_content``, which ``ChromaVectorStore`` and ``_hit`` read), 3.02 s in the layout
before (the text in the metadata key ``TEXT``); in a second run 7.11, 5.34 and 4.41 s (Chroma
1.5.9 embedded, AMD EPYC, 2 cores shared at a load of 12 to 15, so only the ratios count). The
documents make a write about 1.6 times as long. A write holds the GIL throughout, but on a CPU the
encoder's kernels run without it, and the write stage was 1.0% (with documents) and 1.1% (without)
of a build's wall time, which kept 0.947 and 0.961 of the fastest bare encode (goal 0.9). On a GPU,
where the writer was busy 56% of an H200 build's wall time in the layout before, documents may make
the writer the bottleneck: ``store_documents: false`` is the switch for the fastest builds there;
the default keeps the index readable by every Chroma client.

Reads take every layout: the text from the document (this layout, and indexes written before
``TEXT``), from ``TEXT``, or from ``_node_content``; the private keys of each are kept out of what
``Hit.metadata`` shows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.errors import StoreError
from indexer.index import chroma
from indexer.index.write_errors import is_disk_full, write_error

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

# Metadata keys every chunk carries; they are the citation a user reads and the keys sync runs on.
DOC_ID = "doc_id"
FILE_HASH = "file_hash"
CHUNK_INDEX = "chunk"
# The chunk's text in the metadata, in indexes written before the text became the document again.
TEXT = "indexer:text"
# LlamaIndex's node, as JSON, in the metadata (``node_to_metadata_dict``).
NODE_CONTENT = "_node_content"
# Keys of LlamaIndex's layout kept out of what ``Hit.metadata`` shows, as ``TEXT`` is (``doc_id``,
# which LlamaIndex also writes, is indexer's own and keeps its value: the source document).
LLAMA_KEYS = ("_node_type", "document_id", "ref_doc_id")
# Metadata a LlamaIndex synthesizer need not show its LLM.
_BOOKKEEPING = frozenset({DOC_ID, FILE_HASH, CHUNK_INDEX, "start_char", "end_char", "file_name"})


@dataclass
class Chunk:
    id: str
    text: str
    metadata: dict[str, Any]
    embedding: list[float] | None = None
    terms: str | None = None  # its keyword-index terms, when the chunking stage made them
    token_ids: Any = None  # the model's input ids, when the chunking stage made them (until encoded)
    # Its Chroma metadata (``node_record``) when the chunking stage made it, and whether that was
    # with the text as the document: a process that chunks nothing then never imports LlamaIndex.
    record: tuple[bool, dict[str, Any]] | None = None


@dataclass(frozen=True)
class Committed:
    """What the manifest says the index holds: the hash of each document."""

    hashes: dict[str, str]

    def holds(self, hit: Hit) -> bool:
        return self.holds_metadata(hit.metadata)

    def holds_metadata(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a chunk with this metadata (indexer's, or a LlamaIndex node's) is committed."""
        return self.hashes.get(str(metadata.get(DOC_ID))) == metadata.get(FILE_HASH)


@dataclass
class Hit:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0


class ChunkStore:
    def __init__(
        self,
        collection: Collection,
        max_batch_size: int,
        committed: Callable[[], Committed | None] | None = None,
        *,
        folder: Path | None = None,
        store_documents: bool = True,
    ) -> None:
        """``committed`` says what the manifest holds at the time of a search (``None``: show
        every chunk); ``folder`` is the index folder of an embedded Chroma, whose free space tells
        a write that failed for want of room; ``store_documents``: write each chunk's text as its
        Chroma document (else inside LlamaIndex's node JSON only; see the module docstring)."""
        self._collection = collection
        self.store_documents = store_documents
        self._max_batch = max(1, max_batch_size)
        self._committed = committed
        self.folder = folder

    @property
    def name(self) -> str:
        return self._collection.name

    def index_settings(self) -> dict[str, Any]:
        """The collection's HNSW settings, as Chroma reports them."""
        return chroma.hnsw_settings(self._collection)

    def count(self) -> int:
        """The chunks stored; it reads Chroma's vector segment, so it also tells whether that
        segment can be read at all (``VectorIndexDamaged`` when not)."""
        try:
            return self._collection.count()
        except Exception as exc:
            raise read_error(exc, f"count the chunks of collection {self.name!r}") from None

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Chroma's write errors (a full disk: ``InternalError``) as one clear ``StoreError``."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            raise write_error(exc, what, f"collection {self.name!r}", folder=self.folder) from None

    def add(self, chunks: Sequence[Chunk], embeddings: Any = None) -> None:
        """Write chunks with their vectors: ``embeddings`` (one row per chunk, e.g. a numpy array,
        which Chroma takes without a Python list per vector) or each chunk's ``embedding``."""
        with self._writing("write chunks"):
            self._add(chunks, embeddings)

    def _add(self, chunks: Sequence[Chunk], embeddings: Any) -> None:
        for start in range(0, len(chunks), self._max_batch):
            batch = chunks[start : start + self._max_batch]
            vectors: Any = (
                embeddings[start : start + self._max_batch]
                if embeddings is not None
                else [c.embedding for c in batch]
            )
            metadatas = [self._metadata(c) for c in batch]
            self._collection.upsert(
                ids=[c.id for c in batch],
                documents=[c.text for c in batch] if self.store_documents else None,
                metadatas=metadatas,  # type: ignore[arg-type]
                embeddings=vectors,
            )

    def _metadata(self, chunk: Chunk) -> dict[str, Any]:
        if chunk.record is not None and chunk.record[0] == self.store_documents:
            return chunk.record[1]
        return node_record(chunk, with_document=self.store_documents)[1]

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        """Remove every chunk of these documents, in a few calls rather than one per document."""
        with self._writing("remove chunks"):
            for start in range(0, len(doc_ids), 256):
                self._collection.delete(where=chroma.where_in(DOC_ID, doc_ids[start : start + 256]))  # type: ignore[arg-type]

    def delete_ids(self, ids: Sequence[str]) -> None:
        with self._writing("remove chunks"):
            for start in range(0, len(ids), self._max_batch):
                self._collection.delete(ids=list(ids[start : start + self._max_batch]))

    def versions(self, page: int = 5000) -> Iterator[tuple[str, str, str]]:
        """``(chunk id, doc_id, file_hash)`` of every chunk, paged so memory stays flat."""
        offset = 0
        while True:
            got = self._collection.get(include=["metadatas"], limit=page, offset=offset)  # type: ignore[list-item]
            ids = got["ids"]
            for chunk_id, meta in zip(ids, got["metadatas"] or [], strict=True):
                meta = meta or {}
                yield chunk_id, str(meta.get(DOC_ID, "")), str(meta.get(FILE_HASH, ""))
            if len(ids) < page:
                return
            offset += page

    def delete_document(self, doc_id: str, *, keep_hash: str | None = None) -> None:
        """Remove a document's chunks; with ``keep_hash``, only those of other versions."""
        clauses: list[chroma.Where] = [{DOC_ID: doc_id}]
        if keep_hash is not None:
            clauses.append(chroma.where_not_equal(FILE_HASH, keep_hash))
        where = chroma.where_all(clauses)
        with self._writing("remove chunks"):
            self._collection.delete(where=where)  # type: ignore[arg-type]

    def search(self, embedding: Sequence[float], top_k: int, where: chroma.Where | None = None) -> list[Hit]:
        """The ``top_k`` committed chunks nearest to ``embedding`` (cosine similarity as score).

        Chunks a build has written but not yet committed are skipped, and the fetch widens until it
        has ``top_k`` committed ones or the collection runs out; outside a build the first fetch
        suffices. The collection is never counted here: Chroma counts rows, ~10 ms at 100k chunks,
        more than the search itself.
        """
        if top_k <= 0:
            return []
        committed = self._committed() if self._committed is not None else None
        wanted = top_k
        while True:
            hits = self._query(embedding, wanted, where)
            visible = hits if committed is None else [h for h in hits if committed.holds(h)]
            if len(visible) >= top_k or len(hits) < wanted:
                return visible[:top_k]
            wanted *= 4

    def _query(self, embedding: Sequence[float], n: int, where: chroma.Where | None) -> list[Hit]:
        query: list[Sequence[float] | Sequence[int]] = [list(embedding)]
        try:
            result = self._collection.query(
                query_embeddings=query,
                n_results=n,
                where=where,  # type: ignore[arg-type]
                include=["documents", "metadatas", "distances"],  # type: ignore[list-item]
            )
        except Exception as exc:
            if is_disk_full(exc, self.folder):  # Chroma applies pending writes before it searches
                raise StoreError(
                    "vector search failed: the disk is full, so Chroma cannot apply its pending "
                    f"writes ({type(exc).__name__}: {exc}). Free some space and ask again."
                ) from None
            damaged = read_error(exc, "search the vectors")
            if isinstance(damaged, VectorIndexDamaged):
                raise damaged from None
            raise StoreError(f"vector search failed: {type(exc).__name__}: {exc}") from None
        ids = result["ids"][0]
        docs = (result["documents"] or [[]])[0]
        metas = (result["metadatas"] or [[]])[0]
        dists = (result["distances"] or [[]])[0]
        # Collections are created with cosine space, where distance = 1 - cosine similarity.
        return [
            _hit(i, d, m, score=1.0 - float(dist))
            for i, d, m, dist in zip(ids, docs, metas, dists, strict=True)
        ]

    def document(self, doc_id: str) -> list[Hit]:
        """The committed chunks of one document, in reading order."""
        try:
            got = self._collection.get(
                where=chroma.where_equal(DOC_ID, doc_id),
                include=["documents", "metadatas"],  # type: ignore[list-item]
            )
        except Exception as exc:
            raise StoreError(f"reading chunks failed: {type(exc).__name__}: {exc}") from None
        docs = got["documents"] or [""] * len(got["ids"])
        metas = got["metadatas"] or [{}] * len(got["ids"])
        hits = [_hit(i, d, m) for i, d, m in zip(got["ids"], docs, metas, strict=True)]
        committed = self._committed() if self._committed is not None else None
        if committed is not None:
            hits = [h for h in hits if committed.holds(h)]
        return sorted(hits, key=lambda h: (_int(h.metadata.get("start_char")), h.id))

    def chunks_of(self, doc_ids: Sequence[str]) -> Iterator[Hit]:
        """Every stored chunk of these documents, whatever its version (text and metadata)."""
        for start in range(0, len(doc_ids), 256):
            part = list(doc_ids[start : start + 256])
            try:
                got = self._collection.get(
                    where=chroma.where_in(DOC_ID, part),  # type: ignore[arg-type]
                    include=["documents", "metadatas"],  # type: ignore[list-item]
                )
            except Exception as exc:
                raise StoreError(f"reading chunks failed: {type(exc).__name__}: {exc}") from None
            docs = got["documents"] or [""] * len(got["ids"])
            metas = got["metadatas"] or [{}] * len(got["ids"])
            for i, d, m in zip(got["ids"], docs, metas, strict=True):
                yield _hit(i, d, m)


class VectorIndexDamaged(StoreError):
    """Chroma cannot read a collection's vector segment (its HNSW files are damaged: written by a
    process that ran out of disk space or was cut off, or changed by hand). ``reason``: what is
    wrong, without the advice."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# Chroma's words for a vector segment it cannot load.
_DAMAGED_SEGMENT = (
    "hnsw segment reader",
    "deserializing pickle",
    "hnsw segment writer",
    "error loading hnsw",
)


def read_error(exc: BaseException, what: str) -> StoreError:
    text = str(exc)
    if any(marker in text.lower() for marker in _DAMAGED_SEGMENT):
        reason = (
            f"cannot {what}: Chroma cannot read the collection's vector index, which is damaged "
            f"({type(exc).__name__}: {text})."
        )
        return VectorIndexDamaged(
            f"{reason} Run `indexer build CONFIG`: it builds the index again into a new collection, "
            "and the damaged one answers keyword searches until then.",
            reason,
        )
    return StoreError(f"cannot {what}: {type(exc).__name__}: {text}")


def _hit(chunk_id: str, document: str | None, metadata: Any, score: float = 0.0) -> Hit:
    """A stored chunk as a hit, in any layout: the text from the document (this layout, and the
    oldest), else from ``TEXT`` (indexes written between the two), else from LlamaIndex's node JSON
    (``store_documents: false``); the metadata without the layout's private keys."""
    shown = dict(metadata or {})
    text = shown.pop(TEXT, None)
    node_json = shown.pop(NODE_CONTENT, None)
    for key in LLAMA_KEYS:
        shown.pop(key, None)
    if text is None:
        text = document if document is not None else _node_text(node_json)
    return Hit(id=chunk_id, text=str(text or ""), metadata=shown, score=score)


def _node_text(node_json: Any) -> str:
    if not isinstance(node_json, str):
        return ""
    try:
        return str(json.loads(node_json).get("text") or "")
    except (ValueError, AttributeError):
        return ""


def node_record(chunk: Chunk, *, with_document: bool = True) -> tuple[str, dict[str, Any]]:
    """A chunk as the Chroma record LlamaIndex's ``ChromaVectorStore.add`` writes for a
    ``TextNode``: its text as the document, and the metadata of ``node_to_metadata_dict`` (the
    flat metadata, the node as JSON in ``_node_content``, ``_node_type`` and the source document as
    ``ref_doc_id``), so ``ChromaVectorStore`` reads it back as the node with the same id, text,
    metadata and ``ref_doc_id``. Without ``with_document`` the text stays in the node's JSON."""
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
    from llama_index.core.vector_stores.utils import node_to_metadata_dict

    metadata = flat_metadata(chunk.metadata)
    doc_id = str(metadata.get(DOC_ID, ""))
    node = TextNode(
        id_=chunk.id,
        text=chunk.text,
        metadata=metadata,
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=doc_id)} if doc_id else {},
        start_char_idx=_optional_int(metadata.get("start_char")),
        end_char_idx=_optional_int(metadata.get("end_char")),
        # indexer embeds the bare text, and its bookkeeping keys are no use to an LLM.
        excluded_embed_metadata_keys=sorted(metadata),
        excluded_llm_metadata_keys=sorted(k for k in metadata if k in _BOOKKEEPING),
    )
    return chunk.text, node_to_metadata_dict(node, remove_text=with_document, flat_metadata=True)


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def flat_metadata(metadata: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """Chroma accepts only scalar metadata; drop Nones and stringify the rest."""
    flat: dict[str, str | int | float | bool] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        flat[key] = value if isinstance(value, str | int | float | bool) else str(value)
    return flat
