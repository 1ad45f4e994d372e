"""Build: bring the index in line with the documents folder.

Only new and changed files are read, chunked and embedded; deleted files leave the index. Files are
read and split on a background thread while the main thread embeds, so the embedding model (the
real cost) never waits for a parser.

Crash safety rests on the manifest as commit point (see ``index/manifest.py``). For each batch:

1. the documents are recorded as ``pending`` in the manifest (intent);
2. their new chunks are written, under ids unique to the file's version;
3. the manifest is saved naming the new versions (commit: queries see them from now on);
4. old versions are removed, and the documents leave ``pending`` with the next save.

Deleted files leave the manifest first and the collection after. Whatever moment a build is killed
at, the manifest describes a complete index (``ChunkStore.search`` hides everything else), and the
next build removes whatever ``pending`` names before doing anything; a count check with a full
sweep backs that up. ``--rebuild`` writes a new collection and switches the manifest to it only
when it is complete, so the old index answers queries until then.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, TypeVar

from indexer.components import Components
from indexer.config.models import Config
from indexer.errors import DataError, StoreError
from indexer.index.lock import writer_lock
from indexer.index.manifest import FileRecord, Manifest, ManifestDamaged, check_compatible
from indexer.index.store import Chunk, ChunkStore
from indexer.ingestion.chunking import chunk_document, make_splitter
from indexer.ingestion.plan import SyncPlan, plan_sync
from indexer.ingestion.readers import UnreadableFile, read_file
from indexer.ingestion.sources import PIPELINE_VERSION, SourceFile, discover, settings_digest
from indexer.progress import progress_bar

log = logging.getLogger(__name__)

# Embedder batches per write (2048 chunks at the default batch size): enough to keep its batches
# full and to amortise the two manifest saves, few enough that memory does not grow with the corpus.
_FLUSH_BATCHES = 32
# Documents read ahead of the embedder; bounds memory whatever the corpus size.
_READ_AHEAD = 64
_VERSIONED_PACKAGES = (
    "indexer",
    "llama-index-core",
    "chromadb",
    "sentence-transformers",
    "transformers",
    "torch",
    "pypdf",
    "docx2txt",
    "python-pptx",
    "EbookLib",
    "odfpy",
    "striprtf",
    "beautifulsoup4",
)

T = TypeVar("T")


@dataclass
class SyncCounts:
    """What bringing an index in line with its sources did, counted alike for a file build and a
    records sync (``ingestion/records.py``), so callers may treat either summary the same way."""

    documents: int = 0
    chunks: int = 0
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    chunks_embedded: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BuildSummary(SyncCounts):
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    rebuild: bool = False
    changes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def chunks_total(self) -> int:
        return self.chunks

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["chunks_total"] = self.chunks
        return data


@dataclass
class _Read:
    doc_id: str
    source: SourceFile
    hash: str
    chunks: list[Chunk] = field(default_factory=list)
    error: str | None = None


def physical_collection(base: str, generation: int) -> str:
    """The collection a generation of an index lives in (``--rebuild`` starts a new generation)."""
    return base if generation == 0 else f"{base[:500]}-g{generation}"


def _generation_of(base: str, name: str) -> int:
    """The generation ``name`` holds for the index ``base``, or -1 when it is not one of its."""
    if name == base:
        return 0
    prefix = f"{base[:500]}-g"
    suffix = name.removeprefix(prefix)
    return int(suffix) if name.startswith(prefix) and suffix.isdigit() else -1


def build_index(
    config: Config,
    components: Components,
    *,
    rebuild: bool = False,
    dry_run: bool = False,
    strict: bool = False,
    show_progress: bool = False,
) -> BuildSummary:
    started = time.perf_counter()
    discovery = discover(config.data)
    if strict and discovery.unsupported:
        names = ", ".join(s.doc_id for s in discovery.unsupported[:10])
        raise DataError(
            f"--strict: {len(discovery.unsupported)} file(s) in {config.data.input_dir} are of a type "
            f"indexer cannot read: {names}. Remove them, exclude them (data.exclude), or list the "
            "types to index in data.required_exts."
        )
    manifest_file = components.manifest_file
    if dry_run:
        previous = None if rebuild else manifest_file.load()
        if previous is not None:
            _check_before_work(config, components, previous)
        plan = plan_sync(config, discovery, previous)
        return _dry_run_summary(plan, previous, rebuild, started)

    persist_dir = config.vector_store.persist_dir
    with writer_lock(
        persist_dir,
        client=components.chroma_client if persist_dir is None else None,
        collection=config.vector_store.collection,
    ):
        if rebuild and persist_dir is not None:
            _set_aside_unopenable_database(components, persist_dir)
        return _Build(config, components, rebuild, strict, show_progress, started, discovery).run()


def _set_aside_unopenable_database(components: Components, persist_dir: Path) -> None:
    """``--rebuild`` over a Chroma database that will not open (damaged on disk): its files are
    moved aside, never deleted, and the index is built into a new one."""
    from indexer.components.vector_store import set_aside_database

    try:
        components.chroma_client  # noqa: B018 - opening it is the test
    except StoreError:
        kept = set_aside_database(persist_dir)
        if kept is None:
            raise
        log.warning("the Chroma database cannot be opened; rebuilding (its files are kept in %s)", kept)


def _check_before_work(config: Config, components: Components, previous: Manifest) -> None:
    """Refuse a mismatched config before loading the model when possible (a no-op build then never
    loads torch), and always before reading or writing anything."""
    from indexer.components.embedding import config_identity

    check_compatible(previous, config_identity(config.embedding), config.chunking.model_dump())


def _dry_run_summary(
    plan: SyncPlan, previous: Manifest | None, rebuild: bool, started: float
) -> BuildSummary:
    files = previous.files if previous else {}
    return BuildSummary(
        documents=len(plan.current),
        chunks=sum(files[d].chunks for d in plan.unchanged),
        added=len(plan.added) + len(plan.retried),
        updated=len(plan.updated),
        deleted=len(plan.deleted),
        unchanged=len(plan.unchanged),
        skipped=[{"file": doc_id, "reason": reason} for doc_id, reason in plan.skipped_now()],
        seconds=round(time.perf_counter() - started, 3),
        dry_run=True,
        rebuild=rebuild,
        changes={**plan.changes(), "added": plan.added + plan.retried},
    )


class _Build:
    """One build, holding the writer lock."""

    def __init__(
        self,
        config: Config,
        components: Components,
        rebuild: bool,
        strict: bool,
        show_progress: bool,
        started: float,
        discovery: Any,
    ) -> None:
        self.config = config
        self.components = components
        self.rebuild = rebuild
        self.strict = strict
        self.show_progress = show_progress
        self.started = started
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.discovery = discovery
        self.manifest_file = components.manifest_file
        self.summary = BuildSummary(rebuild=rebuild)
        self.staging = False

    # -- commit points ---------------------------------------------------------------------------

    def commit(self, manifest: Manifest) -> None:
        """Save the manifest, except while staging a rebuild (the old index stays the live one)."""
        if not self.staging:
            manifest.touch()
            self.manifest_file.save(manifest)

    # -- the build -------------------------------------------------------------------------------

    def run(self) -> BuildSummary:
        config, components = self.config, self.components
        base = config.vector_store.collection
        leftovers: list[str] = []
        try:
            previous = self.manifest_file.load()
        except ManifestDamaged:
            if not self.rebuild:
                raise
            # --rebuild from a manifest nobody can read: keep a copy of it, start a generation
            # above every one of ours, and drop the others once the new one is committed. Only
            # collections named as ours (the configured name and its -gN generations) are touched.
            kept = self.manifest_file.set_aside()
            log.warning("the index manifest is damaged; rebuilding (the old one is kept as %s)", kept)
            previous = None
            leftovers = sorted(self._generations())
        if previous is not None and not self.rebuild:
            _check_before_work(config, components, previous)

        if self.rebuild:
            if previous is not None:
                generation = previous.generation + 1
            else:
                generation = max((_generation_of(base, n) for n in leftovers), default=-1) + 1
            manifest = self._new_manifest(physical_collection(base, generation), generation)
            manifest.retired = [n for n in leftovers if n != manifest.collection]
            self.staging = previous is not None
            if previous is not None:
                # Record the new collection as retired-unless-committed, so that a rebuild killed
                # midway leaves nothing behind that a later build would not remove.
                previous.retired = sorted({*previous.retired, str(manifest.collection)})
                self.manifest_file.save(previous)
            components.drop_collection(str(manifest.collection))  # a killed rebuild's leftovers
            store = self._store(str(manifest.collection))
        else:
            manifest = previous if previous is not None else self._new_manifest(base, 0)
            store = self._store(manifest.collection or base)
            if previous is None and store.count() > 0:
                raise StoreError(
                    f"collection {store.name!r} already holds {store.count()} vectors but has no indexer "
                    f"manifest at {self.manifest_file.path}: it was not built by indexer, or its manifest "
                    "was removed. Use `indexer build CONFIG --rebuild` to replace it, or set "
                    "vector_store.collection to another name."
                )
            self.commit(manifest)
            self._drop_retired(manifest)
            self._recover(store, manifest)

        manifest.vector_index = store.index_settings()
        plan = plan_sync(config, self.discovery, None if self.rebuild else manifest)
        self.summary.unchanged = len(plan.unchanged)
        self.summary.changes = plan.changes()
        self._remember_unsupported(plan, manifest)
        self._remove(store, manifest, plan.deleted)
        self.summary.deleted = len(plan.deleted)
        if plan.todo:
            self._index(store, manifest, plan)

        if not manifest.files:
            reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in self.summary.skipped[:5])
            raise DataError(
                f"no readable documents in {config.data.input_dir}: every file was skipped ({reasons})"
            )
        self.summary.seconds = round(time.perf_counter() - self.started, 3)
        manifest.build_seconds = self.summary.seconds
        manifest.versions = _versions()
        manifest.last_build = {
            "started_at": self.started_at,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": self.summary.seconds,
            "rebuild": self.rebuild,
            **{k: getattr(self.summary, k) for k in ("added", "updated", "deleted", "unchanged")},
            "chunks_embedded": self.summary.chunks_embedded,
        }
        if self.staging:
            self._switch_to(manifest, previous)
        else:
            self.commit(manifest)
            self._drop_retired(manifest)  # a rebuild over a damaged manifest: its leftovers
        self.summary.documents = len(manifest.files)
        self.summary.chunks = manifest.chunk_count
        return self.summary

    def _generations(self) -> list[str]:
        """The collections of this index's generations that exist: the configured name and
        ``NAME-gN`` (see ``physical_collection``)."""
        from indexer.components.vector_store import collection_names

        base = self.config.vector_store.collection
        return [n for n in collection_names(self.components.chroma_client) if _generation_of(base, n) >= 0]

    def _store(self, name: str) -> ChunkStore:
        store = self.components.chunk_store(create=True, collection=name)
        assert store is not None
        return store

    def _new_manifest(self, collection: str, generation: int) -> Manifest:
        from indexer.components.embedding import config_identity

        data = self.config.data
        return Manifest(
            embedding=config_identity(self.config.embedding),  # dimension added once the model loads
            chunking=self.config.chunking.model_dump(),
            loader={
                "input_dir": str(data.input_dir),
                "recursive": data.recursive,
                "required_exts": data.required_exts,
                "exclude": data.exclude,
                "pipeline_version": PIPELINE_VERSION,
            },
            config_hash=settings_digest(self.config.model_dump(mode="json")),
            collection=collection,
            generation=generation,
            versions=_versions(),
        )

    def _switch_to(self, manifest: Manifest, previous: Manifest | None) -> None:
        """The end of a rebuild: one atomic manifest save makes the new collection the index."""
        old = previous.collection if previous is not None else None
        old = old or self.config.vector_store.collection
        retired = set(previous.retired if previous is not None else ()) | {old}
        manifest.retired = sorted(retired - {str(manifest.collection)})
        self.staging = False
        self.commit(manifest)
        self._drop_retired(manifest)

    def _drop_retired(self, manifest: Manifest) -> None:
        current = manifest.collection or self.config.vector_store.collection
        if not manifest.retired:
            return
        for name in manifest.retired:
            if name != current:
                self.components.drop_collection(name)
        manifest.retired = []
        self.commit(manifest)

    def _recover(self, store: ChunkStore, manifest: Manifest) -> None:
        """Finish what a killed build left: its pending documents first, then a full sweep if the
        collection and the manifest still disagree on the chunk count."""
        if manifest.pending:
            log.info("finishing an interrupted build: cleaning %d document(s)", len(manifest.pending))
            for doc_id in manifest.pending:
                record = manifest.files.get(doc_id)
                store.delete_document(doc_id, keep_hash=record.hash if record else None)
            manifest.pending = []
            self.commit(manifest)
        if store.count() != manifest.chunk_count:
            self._sweep(store, manifest)

    def _sweep(self, store: ChunkStore, manifest: Manifest) -> None:
        committed = manifest.committed().hashes
        stray: list[str] = []
        present: Counter[str] = Counter()
        for chunk_id, doc_id, digest in store.versions():
            if committed.get(doc_id) == digest:
                present[doc_id] += 1
            else:
                stray.append(chunk_id)
        store.delete_ids(stray)
        damaged = [d for d, record in manifest.files.items() if present[d] != record.chunks]
        if damaged:  # chunks lost outside indexer: index those files again
            log.warning("%d document(s) had missing chunks and will be indexed again", len(damaged))
            self._remove(store, manifest, damaged)

    def _remember_unsupported(self, plan: SyncPlan, manifest: Manifest) -> None:
        skipped_now = plan.skipped_now()
        for doc_id, reason in skipped_now:
            log.warning("skipped %s: %s", doc_id, reason)
            self.summary.skipped.append({"file": doc_id, "reason": reason})
            manifest.skipped[doc_id] = reason
            manifest.skipped_hashes.pop(doc_id, None)  # never read: retried at the next build
        for doc_id in plan.still_skipped:
            self.summary.skipped.append({"file": doc_id, "reason": manifest.skipped[doc_id]})
        present = set(plan.current) | {doc_id for doc_id, _ in skipped_now}
        for doc_id in [d for d in manifest.skipped if d not in present]:
            del manifest.skipped[doc_id]
            manifest.skipped_hashes.pop(doc_id, None)

    def _remove(self, store: ChunkStore, manifest: Manifest, doc_ids: list[str]) -> None:
        """Take documents out: the manifest first (queries stop seeing them), then the chunks."""
        if not doc_ids:
            return
        for doc_id in doc_ids:
            manifest.files.pop(doc_id, None)
        manifest.pending = sorted({*manifest.pending, *doc_ids})
        self.commit(manifest)
        store.delete_documents(doc_ids)
        manifest.pending = sorted(set(manifest.pending) - set(doc_ids))

    def _index(self, store: ChunkStore, manifest: Manifest, plan: SyncPlan) -> None:
        config, components = self.config, self.components
        identity = components.embedding_identity_dict()
        if self.rebuild or not manifest.embedding.get("dimension"):
            manifest.embedding = identity
        else:
            check_compatible(manifest, identity, config.chunking.model_dump())
        _warn_if_truncating(config, components)
        splitter = make_splitter(config.chunking, components.token_spans)
        previously_indexed = set(manifest.files)
        todo = plan.todo

        def read_all() -> Iterator[_Read]:
            for doc_id in todo:
                source, digest = plan.current[doc_id]
                item = _Read(doc_id, source, digest)
                try:
                    docs = read_file(source.path)
                    item.chunks = chunk_document(splitter, docs, doc_id=doc_id, file_hash=digest)
                except UnreadableFile as exc:
                    item.error = str(exc)
                yield item

        flush_chunks = _FLUSH_BATCHES * config.embedding.batch_size
        batch: list[_Read] = []
        batch_chunks = 0
        with progress_bar("Indexing", total=len(todo), enabled=self.show_progress) as bar:
            for item in _read_ahead(read_all(), _READ_AHEAD):
                if item.error is not None:
                    self._skip(store, manifest, item)
                    bar.advance()
                    continue
                manifest.skipped.pop(item.doc_id, None)
                manifest.skipped_hashes.pop(item.doc_id, None)
                batch.append(item)
                batch_chunks += len(item.chunks)
                if batch_chunks >= flush_chunks:
                    self._flush(store, manifest, batch, previously_indexed)
                    bar.advance(len(batch))
                    batch, batch_chunks = [], 0
            self._flush(store, manifest, batch, previously_indexed)
            bar.advance(len(batch))

    def _skip(self, store: ChunkStore, manifest: Manifest, item: _Read) -> None:
        reason = item.error or "unreadable"
        if self.strict:
            raise DataError(f"--strict: cannot index {item.doc_id} in {self.config.data.input_dir}: {reason}")
        log.warning("skipped %s: %s", item.doc_id, reason)
        self.summary.skipped.append({"file": item.doc_id, "reason": reason})
        manifest.skipped[item.doc_id] = reason
        manifest.skipped_hashes[item.doc_id] = item.hash
        if item.doc_id in manifest.files:  # its old text no longer describes the file
            self._remove(store, manifest, [item.doc_id])

    def _flush(
        self, store: ChunkStore, manifest: Manifest, batch: list[_Read], previously_indexed: set[str]
    ) -> None:
        from indexer.components.embedding import encode_passages

        if not batch:
            return
        ids = [b.doc_id for b in batch]
        manifest.pending = sorted({*manifest.pending, *ids})
        self.commit(manifest)  # intent: the next build cleans these up if this one dies
        chunks = [c for b in batch for c in b.chunks]
        vectors = encode_passages(self.components.embed_model, [c.text for c in chunks])
        store.add(chunks, vectors)
        for b in batch:
            if b.doc_id in previously_indexed:
                self.summary.updated += 1
            else:
                self.summary.added += 1
            manifest.files[b.doc_id] = FileRecord(hash=b.hash, chunks=len(b.chunks), size=b.source.size)
        self.commit(manifest)  # commit: queries see the new versions from here on
        for b in batch:
            if b.doc_id in previously_indexed:
                store.delete_document(b.doc_id, keep_hash=b.hash)
        manifest.pending = sorted(set(manifest.pending) - set(ids))  # saved with the next commit
        self.summary.chunks_embedded += len(chunks)


def _read_ahead(items: Iterable[T], depth: int) -> Iterator[T]:
    """Run ``items`` on a background thread, ``depth`` items ahead of the consumer.

    Parsing and splitting are mostly Python, while torch releases the GIL during the forward pass,
    so the two overlap. Errors in the producer surface in the consumer.
    """
    done = object()
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
        except BaseException as exc:
            buffer.put(_Failure(exc))
            return
        buffer.put(done)

    thread = threading.Thread(target=produce, name="indexer-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full buffer
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


@dataclass
class _Failure:
    exc: BaseException


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
