"""The parallel part of a build: files in, chunks with their vectors out.

A build's plan (which files to index), its writer lease, its intent log and its commits stay in
one process (``ingestion/pipeline.py``); what happens in between, reading, chunking and
embedding, is independent per file, so an engine may spread it over processes (``LocalEngine``)
or a cluster (``ingestion/ray_engine.py``). Every engine yields the same ``Prepared`` items: the
same chunk ids and texts, whichever engine made them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from indexer.index.store import Chunk
from indexer.ingestion.readers import ReadLimits

if TYPE_CHECKING:
    from llama_index.core.node_parser import SentenceSplitter

    from indexer.components.embedding import PassageTokenizer


@dataclass(frozen=True)
class WorkItem:
    """One file to (re)index, as the plan found it."""

    doc_id: str
    path: str
    hash: str
    size: int
    settings_key: str = ""
    """What a file's hash covers beside its bytes (``plan.chunk_settings_key``), so that a worker
    hashes the bytes it reads as the plan hashed the file."""
    limits: ReadLimits = field(default_factory=ReadLimits)


@dataclass
class Prepared:
    """A file read and chunked, and (once an engine embedded it) its chunks' vectors, one row per
    chunk in order; ``error`` says why an unreadable file is skipped. Once the file was read,
    ``item``'s hash and size are those of the bytes its chunks came from, which differ from the
    plan's when the file changed in between: the index then records what it holds, and the next
    build sees that the file differs and reads it again."""

    item: WorkItem
    chunks: list[Chunk] = field(default_factory=list)
    vectors: Any = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    """What the build summary tells of a file read with some pages left empty ("page 3: no text
    (OCR found none)")."""


class Engine(Protocol):
    """Turns work items into prepared, embedded files. Items may come back in any order; an
    engine keeps a bounded number in flight, so memory does not grow with the corpus."""

    @property
    def seconds(self) -> Mapping[str, float]:
        """Busy seconds per stage so far (the build summary's ``stages``)."""
        ...

    def prepare(self, items: Sequence[WorkItem]) -> Iterator[Prepared]: ...

    def close(self) -> None: ...


def read_and_chunk(
    item: WorkItem,
    splitter: SentenceSplitter,
    *,
    keyword_terms: bool = False,
    tokenizer: PassageTokenizer | None = None,
) -> Prepared:
    """Read one file and cut it into chunks (no vectors yet); an unreadable file gives an error,
    whatever its reader raised (``readers.documents_from``). With ``keyword_terms``, each chunk's
    keyword-index terms are made here too: in a chunking worker, that is work the build's writer
    thread, which shares the GIL with the encoder, does not do. With ``tokenizer``, each chunk's
    token ids are made here too, for the encoder."""
    from pathlib import Path

    from indexer.index.keyword import chunk_terms
    from indexer.ingestion.chunking import chunk_document
    from indexer.ingestion.readers import UnreadableFile, documents_from, failure_reason, read_bytes
    from indexer.ingestion.sources import content_hash
    from indexer.ingestion.tables import embedding_text

    prepared = Prepared(item)
    path = Path(item.path)
    try:
        # The bytes are read once, and both the hash and the text come from them: a file rewritten
        # after the plan hashed it is recorded under the hash of what was chunked.
        raw = read_bytes(path, item.limits)
        item = prepared.item = replace(item, hash=content_hash(raw, item.settings_key), size=len(raw))
        docs = documents_from(raw, path.suffix, item.limits, path, prepared.notes)
        try:
            prepared.chunks = chunk_document(splitter, docs, doc_id=item.doc_id, file_hash=item.hash)
        except Exception as exc:  # one odd text must not stop the build, any more than one odd file
            raise UnreadableFile(failure_reason(exc, "cannot be chunked")) from None
        if keyword_terms:
            for chunk in prepared.chunks:
                chunk.terms = chunk_terms(chunk.text)
        if tokenizer is not None:
            texts = [embedding_text(c.text) for c in prepared.chunks]
            for chunk, ids in zip(prepared.chunks, tokenizer(texts), strict=True):
                chunk.token_ids = ids
    except UnreadableFile as exc:
        prepared.error = str(exc)
    return prepared
