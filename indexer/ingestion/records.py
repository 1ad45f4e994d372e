"""Index text records (id, title, text) rather than files: a BEIR corpus, for example.

Each record is one document keyed by its own id, so relevance judgements written against those
ids match what retrieval returns. It uses the same chunker, encoder, chunk store and manifest as a
file build: only new and changed records are embedded, a changed record's new chunks are written
before its old ones go, and the manifest is saved after every flush. Unlike a file build it takes
no writer lock and keeps no intent log: it serves eval indexes, which one run writes at a time.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

from llama_index.core.schema import Document

from indexer.components import Components
from indexer.components.embedding import encode_passages
from indexer.errors import DataError
from indexer.index.manifest import FileRecord, Manifest, check_compatible
from indexer.index.store import Chunk
from indexer.ingestion.chunking import chunk_document, make_splitter
from indexer.ingestion.pipeline import _FLUSH_BATCHES, SyncCounts
from indexer.ingestion.plan import chunk_settings_key
from indexer.progress import progress_bar


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
    settings_key = chunk_settings_key(config)

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
    store.delete_documents(deleted)
    for doc_id in deleted:
        del manifest.files[doc_id]
    summary.deleted = len(deleted)
    if deleted:
        manifest_file.save(manifest)

    splitter = make_splitter(config.chunking, components.token_spans)
    todo = [d for d in current if d not in old or old[d].hash != current[d][1]]
    pending: list[tuple[TextRecord, str, list[Chunk]]] = []
    flush_chunks = _FLUSH_BATCHES * config.embedding.batch_size  # as in a file build

    def flush() -> None:
        chunks = [c for _, _, cs in pending for c in cs]
        if chunks:
            store.add(chunks, encode_passages(components.embed_model, [c.text for c in chunks]))
        for record, digest, cs in pending:
            store.delete_document(record.id, keep_hash=digest)
            manifest.files[record.id] = FileRecord(
                hash=digest, chunks=len(cs), size=len(record.content().encode("utf-8"))
            )
        if pending:
            manifest.touch()
            manifest_file.save(manifest)
        summary.chunks_embedded += len(chunks)

    pending_chunks = 0
    with progress_bar(description, total=len(todo), enabled=show_progress) as bar:
        for doc_id in todo:
            record, digest = current[doc_id]
            doc = Document(text=record.content(), metadata={"title": record.title} if record.title else {})
            chunks = chunk_document(splitter, [doc], doc_id=doc_id, file_hash=digest)
            pending.append((record, digest, chunks))
            pending_chunks += len(chunks)
            if pending_chunks >= flush_chunks:
                flush()
                bar.advance(len(pending))
                pending, pending_chunks = [], 0
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
