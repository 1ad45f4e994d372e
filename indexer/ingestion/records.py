"""Index text records (id, title, text) rather than files: a BEIR corpus, for example.

Each record is one document keyed by its own id, so relevance judgements written against those
ids match what retrieval returns. It goes through the same writer as a file build
(``IndexWriter``: the writer lock, the intent log, a commit per flush), with the same chunker and
encoder: only new and changed records are embedded, and a killed sync leaves a complete index
that the next one finishes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

from llama_index.core.schema import Document

from indexer.components import Components
from indexer.components.embedding import config_identity
from indexer.errors import DataError
from indexer.index.index import Index, IndexWriter, Written
from indexer.index.manifest import Manifest
from indexer.ingestion.chunking import chunk_document, make_splitter
from indexer.ingestion.pipeline import SyncCounts, check_before_work, flush_chunks, record_identity
from indexer.ingestion.plan import chunk_settings_key, plan_changes
from indexer.ingestion.readers import ReadLimits
from indexer.ingestion.tables import embedding_text
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
    index: Index,
    *,
    source: str,
    show_progress: bool = False,
    description: str = "Indexing records",
) -> RecordsSummary:
    """Bring ``index`` in line with ``records``; ``source`` (e.g. the corpus path) is recorded in
    the manifest."""
    started = time.perf_counter()
    config = components.config
    chunking = config.chunking.model_dump()
    settings_key = chunk_settings_key(config)

    current: dict[str, tuple[TextRecord, str]] = {}
    for record in records:
        if record.id in current:
            raise DataError(f"{source}: record id {record.id!r} appears twice")
        current[record.id] = (record, _record_hash(record, settings_key))
    if not current:
        raise DataError(f"{source}: no records to index")

    def fresh(collection: str, generation: int) -> Manifest:
        return Manifest(
            embedding=config_identity(config.embedding).record(),  # the dimension comes with vectors
            chunking=chunking,
            loader={"records": source},
            config_hash=settings_key,
            collection=collection,
            generation=generation,
        )

    with index.writer() as writer:
        manifest = writer.begin(
            rebuild=False, fresh=fresh, check=lambda previous: check_before_work(config, previous)
        )
        digests = {doc_id: digest for doc_id, (_, digest) in current.items()}
        plan = plan_changes(digests, manifest, ReadLimits.of(config.data))
        summary = RecordsSummary(
            added=len(plan.added), updated=len(plan.updated), unchanged=len(plan.unchanged)
        )
        writer.remove(plan.deleted)
        summary.deleted = len(plan.deleted)
        if plan.todo:  # only then is the model loaded
            summary.chunks_embedded = _write_records(
                writer, components, [current[d] for d in plan.todo], show_progress, description
            )
        summary.seconds = round(time.perf_counter() - started, 3)
        if plan.todo or plan.deleted:
            manifest.build_seconds = summary.seconds
        writer.finish()
    summary.documents = len(manifest.files)
    summary.chunks = manifest.chunk_count
    return summary


def _write_records(
    writer: IndexWriter,
    components: Components,
    todo: list[tuple[TextRecord, str]],
    show_progress: bool,
    description: str,
) -> int:
    """Chunk, embed and write records a flush at a time; returns the chunks embedded."""
    embedder = components.embedder
    splitter = make_splitter(components.config.chunking, embedder.token_spans)
    limit = flush_chunks(components.config)
    pending: list[Written] = []
    embedded = 0
    identified = False
    manifest = writer.manifest
    assert manifest is not None  # the writer has begun

    def flush() -> None:
        nonlocal embedded, identified
        chunks = [c for w in pending for c in w.chunks]
        if chunks:
            texts = [embedding_text(c.text) for c in chunks]
            vectors = embedder.embed(texts)
            at = 0
            for w in pending:
                w.vectors, at = vectors[at : at + len(w.chunks)], at + len(w.chunks)
            if not identified:
                record_identity(manifest, components.config, pending, rebuild=False)
                identified = True
        writer.write(pending)
        embedded += len(chunks)

    size = 0
    with progress_bar(description, total=len(todo), enabled=show_progress) as bar:
        for record, digest in todo:
            doc = Document(text=record.content(), metadata={"title": record.title} if record.title else {})
            chunks = chunk_document(splitter, [doc], doc_id=record.id, file_hash=digest)
            pending.append(Written(record.id, digest, len(record.content().encode("utf-8")), chunks, None))
            size += len(chunks)
            if size >= limit:
                flush()
                bar.advance(len(pending))
                pending, size = [], 0
        flush()
        bar.advance(len(pending))
    return embedded


def _record_hash(record: TextRecord, settings_key: str) -> str:
    digest = hashlib.sha256(settings_key.encode())
    digest.update(record.title.encode("utf-8") + b"\0" + record.text.encode("utf-8"))
    return digest.hexdigest()[:32]
