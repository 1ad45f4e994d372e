"""Build: bring the index in line with the documents folder.

Only new and changed files are read, chunked and embedded; deleted files leave the index. A new
version of a file is written before its old chunks are removed, and the manifest (the record of
what is indexed) is saved after every flush, so a build stopped at any point leaves an index that
answers queries, and the next build finishes the job with no duplicate or orphan chunk.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any

from indexer.components import Components
from indexer.config.models import Config
from indexer.errors import DataError
from indexer.index.manifest import FileRecord, Manifest, check_compatible
from indexer.index.store import Chunk, ChunkStore
from indexer.ingestion.chunking import chunk_document, make_splitter
from indexer.ingestion.readers import UnreadableFile, read_file
from indexer.ingestion.sources import SourceFile, discover, file_hash, settings_digest
from indexer.progress import progress_bar

log = logging.getLogger(__name__)

# Chunks held before embedding and writing them: big enough to keep the embedder's batches full,
# small enough that memory does not grow with the corpus.
_FLUSH_CHUNKS = 2048
_VERSIONED_PACKAGES = ("indexer", "llama-index-core", "chromadb", "sentence-transformers", "torch")


@dataclass
class BuildSummary:
    documents: int = 0
    chunks: int = 0
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    chunks_embedded: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    changes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def chunks_total(self) -> int:
        return self.chunks

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["chunks_total"] = self.chunks
        return data


@dataclass
class _Pending:
    source: SourceFile
    hash: str
    chunks: list[Chunk]


def build_index(
    config: Config,
    components: Components,
    *,
    rebuild: bool = False,
    dry_run: bool = False,
    show_progress: bool = False,
) -> BuildSummary:
    started = time.perf_counter()
    sources = discover(config.data)
    identity = components.embedding_identity_dict()
    chunking = config.chunking.model_dump()
    settings_key = settings_digest({"chunking": chunking, "passage_prefix": identity["passage_prefix"]})

    manifest_file = components.manifest_file
    previous = None if rebuild else manifest_file.load()
    if previous is not None:
        check_compatible(previous, identity, chunking)

    current = {s.doc_id: (s, file_hash(s.path, settings_key)) for s in sources}
    old_files = previous.files if previous else {}
    added = [d for d in current if d not in old_files]
    updated = [d for d in current if d in old_files and old_files[d].hash != current[d][1]]
    unchanged = [d for d in current if d in old_files and old_files[d].hash == current[d][1]]
    deleted = [d for d in old_files if d not in current]
    summary = BuildSummary(
        added=len(added),
        updated=len(updated),
        deleted=len(deleted),
        unchanged=len(unchanged),
        dry_run=dry_run,
        changes={"added": added, "updated": updated, "deleted": deleted},
    )
    if dry_run:
        summary.documents = len(current)
        summary.chunks = sum(old_files[d].chunks for d in unchanged)
        summary.seconds = round(time.perf_counter() - started, 3)
        return summary

    if rebuild:
        components.drop_collection()
        manifest_file.delete()
    store = components.chunk_store(create=True)
    assert store is not None
    manifest = previous or _new_manifest(config, identity, chunking)
    manifest.versions = _versions()

    for doc_id in deleted:
        store.delete_document(doc_id)
        manifest.files.pop(doc_id, None)
        manifest.skipped.pop(doc_id, None)
    if deleted:
        manifest_file.save(manifest)

    _warn_if_truncating(config, components)
    splitter = make_splitter(config.chunking, components.tokenize)
    todo = added + updated
    pending: list[_Pending] = []
    with progress_bar("Indexing", total=len(todo), enabled=show_progress) as bar:
        for doc_id in todo:
            source, digest = current[doc_id]
            try:
                docs = read_file(source.path)
            except UnreadableFile as exc:
                log.warning("skipped %s: %s", doc_id, exc)
                summary.skipped.append({"file": doc_id, "reason": str(exc)})
                manifest.skipped[doc_id] = str(exc)
                if doc_id in manifest.files:  # its old text no longer describes the file
                    store.delete_document(doc_id)
                    del manifest.files[doc_id]
                bar.advance()
                continue
            manifest.skipped.pop(doc_id, None)
            pending.append(
                _Pending(source, digest, chunk_document(splitter, docs, doc_id=doc_id, file_hash=digest))
            )
            if sum(len(p.chunks) for p in pending) >= _FLUSH_CHUNKS:
                summary.chunks_embedded += _flush(pending, store, components, manifest, manifest_file)
                bar.advance(len(pending))
                pending = []
        summary.chunks_embedded += _flush(pending, store, components, manifest, manifest_file)
        bar.advance(len(pending))

    if not manifest.files:
        reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in summary.skipped[:5])
        raise DataError(
            f"no readable documents in {config.data.input_dir}: every file was skipped ({reasons})"
        )
    summary.seconds = round(time.perf_counter() - started, 3)
    manifest.build_seconds = summary.seconds
    manifest.touch()
    manifest_file.save(manifest)
    summary.documents = len(manifest.files)
    summary.chunks = manifest.chunk_count
    return summary


def _flush(
    pending: list[_Pending],
    store: ChunkStore,
    components: Components,
    manifest: Manifest,
    manifest_file: Any,
) -> int:
    chunks = [c for p in pending for c in p.chunks]
    if chunks:
        vectors = components.embed_model.get_text_embedding_batch([c.text for c in chunks])
        for chunk, vector in zip(chunks, vectors, strict=True):
            chunk.embedding = vector
        store.add(chunks)
    for p in pending:
        # New version first, then drop the old one: a stop in between leaves both, which the
        # manifest (still naming the old hash) lets the next build clean up.
        store.delete_document(p.source.doc_id, keep_hash=p.hash)
        manifest.files[p.source.doc_id] = FileRecord(hash=p.hash, chunks=len(p.chunks), size=p.source.size)
    if pending:
        manifest.touch()
        manifest_file.save(manifest)
    return len(chunks)


def _new_manifest(config: Config, identity: dict[str, Any], chunking: dict[str, Any]) -> Manifest:
    data = config.data
    return Manifest(
        embedding=identity,
        chunking=chunking,
        loader={
            "input_dir": str(data.input_dir),
            "recursive": data.recursive,
            "required_exts": data.required_exts,
            "exclude": data.exclude,
        },
        config_hash=settings_digest(config.model_dump(mode="json")),
    )


def _versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def _warn_if_truncating(config: Config, components: Components) -> None:
    limit = components.embedding_max_tokens
    if limit and config.chunking.chunk_size > limit:
        log.warning(
            "chunking.chunk_size %d exceeds the embedding model's input of %d tokens: the end of "
            "each chunk will not be embedded",
            config.chunking.chunk_size,
            limit,
        )
