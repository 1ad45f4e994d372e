"""Index text records (id, title, text) rather than files: a BEIR corpus, for example.

Each record is one document keyed by its own id, so relevance judgements written against those
ids match what retrieval returns. It uses the same chunker, chunk store and manifest as a file
build, and the same guarantees: only new and changed records are embedded, a changed record's new
chunks are written before its old ones go, and the manifest is saved after every flush.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

from llama_index.core.schema import Document

from indexer.components import Components
from indexer.errors import DataError
from indexer.index.manifest import FileRecord, Manifest, check_compatible
from indexer.index.store import Chunk
from indexer.ingestion.chunking import chunk_document, make_splitter
from indexer.ingestion.pipeline import SyncCounts
from indexer.ingestion.sources import settings_digest
from indexer.progress import progress_bar

# As in a file build: keeps the embedder's batches full without holding the corpus in memory.
_FLUSH_CHUNKS = 2048


@dataclass
class TextRecord:
    id: str
    text: str
    title: str = ""

    def content(self) -> str:
        # BEIR's own encoders embed "title text"; a line break keeps the title a sentence of its own.
        return f"{self.title}\n{self.text}" if self.title.strip() else self.text


@dataclass
class RecordsSummary(SyncCounts):
    seconds: float = 0.0


def index_records(
    records: Iterable[TextRecord],
    components: Components,
    *,
    source: str,
    show_progress: bool = False,
    description: str = "Indexing records",
) -> RecordsSummary:
    """Bring the index of ``components`` in line with ``records``; ``source`` (e.g. the corpus
    path) is recorded in the manifest."""
    started = time.perf_counter()
    config = components.config
    identity = components.embedding_identity_dict()
    chunking = config.chunking.model_dump()
    settings_key = settings_digest({"chunking": chunking, "passage_prefix": identity["passage_prefix"]})

    current: dict[str, tuple[TextRecord, str]] = {}
    for record in records:
        if record.id in current:
            raise DataError(f"{source}: record id {record.id!r} appears twice")
        current[record.id] = (record, _record_hash(record, settings_key))
    if not current:
        raise DataError(f"{source}: no records to index")

    manifest_file = components.manifest_file
    manifest = manifest_file.load()
    if manifest is not None:
        check_compatible(manifest, identity, chunking)
    else:
        manifest = Manifest(
            embedding=identity,
            chunking=chunking,
            loader={"records": source},
            config_hash=settings_key,
        )
    old = manifest.files
    summary = RecordsSummary(
        added=sum(1 for d in current if d not in old),
        updated=sum(1 for d in current if d in old and old[d].hash != current[d][1]),
        unchanged=sum(1 for d in current if d in old and old[d].hash == current[d][1]),
    )
    store = components.chunk_store(create=True)
    assert store is not None
    deleted = [d for d in old if d not in current]
    for doc_id in deleted:
        store.delete_document(doc_id)
        del manifest.files[doc_id]
    summary.deleted = len(deleted)
    if deleted:
        manifest_file.save(manifest)

    splitter = make_splitter(config.chunking, components.tokenize)
    todo = [d for d in current if d not in old or old[d].hash != current[d][1]]
    pending: list[tuple[TextRecord, str, list[Chunk]]] = []

    def flush() -> None:
        chunks = [c for _, _, cs in pending for c in cs]
        if chunks:
            vectors = components.embed_model.get_text_embedding_batch([c.text for c in chunks])
            for chunk, vector in zip(chunks, vectors, strict=True):
                chunk.embedding = vector
            store.add(chunks)
        for record, digest, cs in pending:
            store.delete_document(record.id, keep_hash=digest)
            manifest.files[record.id] = FileRecord(
                hash=digest, chunks=len(cs), size=len(record.content().encode("utf-8"))
            )
        if pending:
            manifest.touch()
            manifest_file.save(manifest)
        summary.chunks_embedded += len(chunks)

    with progress_bar(description, total=len(todo), enabled=show_progress) as bar:
        for doc_id in todo:
            record, digest = current[doc_id]
            doc = Document(text=record.content(), metadata={"title": record.title} if record.title else {})
            pending.append((record, digest, chunk_document(splitter, [doc], doc_id=doc_id, file_hash=digest)))
            if sum(len(cs) for _, _, cs in pending) >= _FLUSH_CHUNKS:
                flush()
                bar.advance(len(pending))
                pending = []
        flush()
        bar.advance(len(pending))

    summary.seconds = round(time.perf_counter() - started, 3)
    if todo or deleted:
        manifest.build_seconds = summary.seconds
    manifest.touch()
    manifest_file.save(manifest)
    summary.documents = len(manifest.files)
    summary.chunks = manifest.chunk_count
    return summary


def _record_hash(record: TextRecord, settings_key: str) -> str:
    digest = hashlib.sha256(settings_key.encode())
    digest.update(record.title.encode("utf-8") + b"\0" + record.text.encode("utf-8"))
    return digest.hexdigest()[:32]
