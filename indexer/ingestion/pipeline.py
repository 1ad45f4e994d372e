"""Build: bring the index in line with the documents folder.

Only new and changed files are read, chunked and embedded; deleted files leave the index. The plan
(what to index), the writer lock, the intent log and every commit stay in this process and go
through ``IndexWriter`` (``index/index.py``, which describes the commit protocol and why a killed
build always leaves a complete index). Reading, chunking and embedding are an engine's job
(``ingestion/prepare.py``): this machine's processes (``LocalEngine``) or a Ray cluster.

Three stages overlap: the engine chunks ahead of the model and embeds, while a writer thread
stores and commits the previous flush. Memory stays bounded whatever the corpus: the chunker runs
at most two flushes ahead, one flush is being embedded, and at most two wait for or are in the
writer: about ``5 × 32 × embedding.batch_size`` chunks (10,240 at the default batch size, ~40 MB
of text, keyword terms and vectors for MiniLM), plus one file's text per chunking worker.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from typing import TYPE_CHECKING, Any

from indexer.components import Components
from indexer.errors import DataError
from indexer.index.index import Index, IndexWriter, Written
from indexer.index.manifest import Manifest, check_compatible
from indexer.index.store import VectorIndexDamaged
from indexer.ingestion.chunk_ahead import ChunkedAhead, chunk_ahead
from indexer.ingestion.plan import SyncPlan, plan_sync, refuse_unreadable, work_items
from indexer.ingestion.prepare import Engine, Prepared
from indexer.ingestion.readers import ReadLimits, configured_reader, readers_record
from indexer.ingestion.sources import PIPELINE_VERSION, Discovery, discover, settings_digest
from indexer.progress import progress_bar

if TYPE_CHECKING:
    from indexer.config.models import Config

log = logging.getLogger(__name__)

# Embedder batches per write (2048 chunks at the default batch size): enough to keep its batches
# full and to amortise the two manifest saves, few enough that memory does not grow with the corpus.
FLUSH_BATCHES = 32
# An idle writer is handed what is embedded once it holds this many batches, so that at the end of
# a build little is left to write after the last chunk is embedded, at the price of more commits.
_EARLY_FLUSH_BATCHES = 8
_EARLY_FLUSH_COMMIT_SHARE = 0.02
_VERSIONED_PACKAGES = (
    "indexer",
    "llama-index-core",
    "chromadb",
    "sentence-transformers",
    "transformers",
    "torch",
    "pdfplumber",
    "pdfminer.six",
    "python-docx",
    "openpyxl",
    "python-pptx",
    "EbookLib",
    "odfpy",
    "striprtf",
    "beautifulsoup4",
)


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
    stages: dict[str, float] = field(default_factory=dict)
    """Busy seconds per stage: read_chunk, encode, write, keyword, commit (they overlap)."""
    dtype: dict[str, str] = field(default_factory=dict)
    """The number format passages were embedded in and why (``embedding.dtype``), when any were."""
    unreadable: list[dict[str, str]] = field(default_factory=list)
    """Folders (``name/``) and files that cannot be read now; never taken for deleted."""
    kept: list[str] = field(default_factory=list)
    """Indexed documents left as last built because their file or folder cannot be read now."""
    notes: list[dict[str, str]] = field(default_factory=list)
    """Files indexed with something to tell: a page that yielded no text, say (``Prepared.notes``)."""


def build_index(
    components: Components,
    index: Index,
    *,
    rebuild: bool = False,
    dry_run: bool = False,
    strict: bool = False,
    show_progress: bool = False,
) -> BuildSummary:
    """Bring ``index`` in line with the documents folder of ``components.config``."""
    started = time.perf_counter()
    config = components.config
    discovery = discover(config.data)
    if strict and discovery.unsupported:
        names = ", ".join(s.doc_id for s in discovery.unsupported[:10])
        raise DataError(
            f"--strict: {len(discovery.unsupported)} file(s) in {config.data.input_dir} are of a type "
            f"indexer cannot read: {names}. Remove them, exclude them (data.exclude), or list the "
            "types to index in data.required_exts."
        )
    if dry_run:
        previous = None if rebuild else index.manifest_file.load()
        if previous is not None:
            check_before_work(config, previous)
        plan = plan_sync(config, discovery, previous)
        if strict:
            refuse_unreadable(plan, config.data.input_dir)
        return _dry_run_summary(plan, previous, rebuild, started)

    ahead = None if rebuild else chunk_ahead(config, index, discovery)
    try:
        with index.writer() as writer:
            if rebuild:
                index.set_aside_damaged()
            return _Build(components, writer, rebuild, strict, show_progress, started, discovery, ahead).run()
    finally:
        if ahead is not None:
            ahead.close()


def check_before_work(config: Config, previous: Manifest) -> None:
    """Refuse a mismatched config before loading the model when possible (a no-op build then never
    loads torch), and always before reading or writing anything."""
    from indexer.components.embedding import identity_to_check

    identity = identity_to_check(config.embedding, previous.embedding)
    check_compatible(previous, identity, config.chunking.model_dump())


def record_identity(manifest: Manifest, config: Config, written: Sequence[Written], *, rebuild: bool) -> None:
    """Record the identity of the vectors in ``written`` (some chunks have some) in ``manifest``
    before their first write, or refuse them when the index holds another vector space (the model
    behind a name changed, say). Until then a manifest knows the model by its config, without a
    dimension, so an index whose files are unchanged is synced without loading the model."""
    from indexer.components.embedding import identity_for

    dimension = next(int(w.vectors.shape[1]) for w in written if len(w.chunks))
    identity = identity_for(config.embedding, dimension)
    if rebuild or not manifest.embedding.get("dimension"):
        manifest.embedding = identity.record()
    else:
        check_compatible(manifest, identity, config.chunking.model_dump())


def _dry_run_summary(
    plan: SyncPlan, previous: Manifest | None, rebuild: bool, started: float
) -> BuildSummary:
    files = previous.files if previous else {}
    return BuildSummary(
        documents=len(plan.current) + len(plan.kept),
        chunks=sum(files[d].chunks for d in plan.unchanged + plan.kept),
        added=len(plan.added) + len(plan.retried),
        updated=len(plan.updated),
        deleted=len(plan.deleted),
        unchanged=len(plan.unchanged),
        skipped=[{"file": doc_id, "reason": reason} for doc_id, reason in plan.skipped_now()],
        seconds=round(time.perf_counter() - started, 3),
        dry_run=True,
        rebuild=rebuild,
        changes={**plan.changes(), "added": plan.added + plan.retried},
        unreadable=plan.unreadable_now(),
        kept=plan.kept,
    )


def make_engine(components: Components, ahead: ChunkedAhead | None = None) -> Engine:
    """The engine ``build.engine`` names; made only when a build has files to index, so a build
    with nothing to do never loads the model or connects to a cluster."""
    config = components.config
    if config.build.engine == "ray":
        from indexer.ingestion.ray_engine import RayEngine

        return RayEngine(config)
    from indexer.ingestion.local_engine import LocalEngine

    return LocalEngine(components, flush_chunks=flush_chunks(config), ahead=ahead)


def flush_chunks(config: Config) -> int:
    """Chunks per commit, for file builds and record syncs alike."""
    return FLUSH_BATCHES * config.embedding.batch_size


class _Build:
    """One build, holding the writer lock."""

    def __init__(
        self,
        components: Components,
        writer: IndexWriter,
        rebuild: bool,
        strict: bool,
        show_progress: bool,
        started: float,
        discovery: Discovery,
        ahead: ChunkedAhead | None = None,
    ) -> None:
        self.config = components.config
        self.ahead = ahead
        self.components = components
        self.writer = writer
        self.rebuild = rebuild
        self.strict = strict
        self.show_progress = show_progress
        self.started = started
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.discovery = discovery
        self.summary = BuildSummary(rebuild=rebuild)
        self.previously_indexed: set[str] = set()
        self._identity_checked = False

    def run(self) -> BuildSummary:
        config, writer = self.config, self.writer
        try:
            manifest = writer.begin(
                rebuild=self.rebuild,
                fresh=self._new_manifest,
                check=lambda previous: check_before_work(config, previous),
            )
        except VectorIndexDamaged as exc:
            if self.rebuild:
                raise
            # Chroma keeps each vector only in its HNSW files once they are saved, so a damaged
            # segment cannot be mended from the database: build a new generation instead. The
            # damaged one stays the committed index (keyword search still answers) until then.
            log.warning("%s Building the index again into a new collection.", exc.reason)
            self.rebuild = self.summary.rebuild = True
            writer.close()
            manifest = writer.begin(
                rebuild=True,
                fresh=self._new_manifest,
                check=lambda previous: check_before_work(config, previous),
            )
        plan = plan_sync(config, self.discovery, None if self.rebuild else manifest)
        if self.strict:
            refuse_unreadable(plan, config.data.input_dir)
        self.summary.unreadable, self.summary.kept = plan.unreadable_now(), plan.kept
        for item in plan.unreadable:
            if item.doc_id.endswith("/") or item.doc_id in plan.kept:  # the others are logged as skipped
                log.warning(
                    "unreadable %s: %s; the index keeps what it holds for it", item.doc_id, item.reason
                )
        self.summary.unchanged = len(plan.unchanged)
        # What was added and updated, as the files were indexed (a planned file may turn out
        # unreadable; one skipped before may be read now, like a new one).
        self.summary.changes = {"added": [], "updated": [], "deleted": plan.deleted}
        self._remember_unsupported(plan, manifest)
        if self.strict and plan.still_skipped:
            # Not read again (unchanged since a build skipped them), yet just as unindexed.
            doc_id = plan.still_skipped[0]
            raise DataError(
                f"--strict: cannot index {doc_id} in {config.data.input_dir}: {manifest.skipped[doc_id]} "
                f"(unchanged since an earlier build skipped it; {len(plan.still_skipped)} such file(s))"
            )
        writer.remove(plan.deleted)
        self.summary.deleted = len(plan.deleted)
        if plan.todo:
            from indexer.components.embedding import prepare_query_route, resolve_dtype

            dtype, reason = resolve_dtype(config.embedding)
            self.summary.dtype = {"dtype": dtype, "reason": reason}
            self._index(plan)
            if config.build.engine == "local":
                prepare_query_route(config.embedding)
        for done in self.summary.changes.values():
            done.sort()

        if not manifest.files:
            unread = {s["file"]: s["reason"] for s in self.summary.skipped + self.summary.unreadable}
            reasons = "; ".join(f"{name}: {why}" for name, why in list(unread.items())[:5])
            raise DataError(
                f"no readable documents in {config.data.input_dir}: every file was skipped ({reasons})"
            )
        self.summary.seconds = round(time.perf_counter() - self.started, 3)
        manifest.build_seconds = self.summary.seconds
        manifest.versions = _versions()
        manifest.loader.pop("readers", None)  # the readers of this build's config, as last built
        manifest.loader.update(readers_record(config.data))
        manifest.last_build = {
            "started_at": self.started_at,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": self.summary.seconds,
            "rebuild": self.rebuild,
            **{k: getattr(self.summary, k) for k in ("added", "updated", "deleted", "unchanged")},
            "chunks_embedded": self.summary.chunks_embedded,
            "engine": config.build.engine,
        }
        writer.finish()
        for stage, seconds in writer.seconds.items():
            self.summary.stages[stage] = round(self.summary.stages.get(stage, 0.0) + seconds, 3)
        self.summary.documents = len(manifest.files)
        self.summary.chunks = manifest.chunk_count
        return self.summary

    def _new_manifest(self, collection: str, generation: int) -> Manifest:
        from indexer.components.embedding import config_identity

        data = self.config.data
        return Manifest(
            embedding=config_identity(self.config.embedding).record(),  # dimension added with vectors
            chunking=self.config.chunking.model_dump(),
            loader={
                "input_dir": str(data.input_dir),
                "recursive": data.recursive,
                "required_exts": data.required_exts,
                "exclude": data.exclude,
                "pipeline_version": PIPELINE_VERSION,
                **readers_record(data),
            },
            config_hash=settings_digest(self.config.model_dump(mode="json")),
            collection=collection,
            generation=generation,
            versions=_versions(),
        )

    def _remember_unsupported(self, plan: SyncPlan, manifest: Manifest) -> None:
        skipped_now = plan.skipped_now()
        for doc_id, reason in skipped_now:
            # Info, not a warning: the summary lists every skipped file and each front end (build,
            # watch, serve --watch) reports it from there; a warning here printed each one twice.
            log.info("skipped %s: %s", doc_id, reason)
            self.summary.skipped.append({"file": doc_id, "reason": reason})
            manifest.skipped[doc_id] = reason
            manifest.skipped_hashes.pop(doc_id, None)  # never read: retried at the next build
        for doc_id in plan.still_skipped:
            self.summary.skipped.append({"file": doc_id, "reason": manifest.skipped[doc_id]})
        present = set(plan.current) | {doc_id for doc_id, _ in skipped_now}
        for doc_id in [d for d in manifest.skipped if d not in present]:
            del manifest.skipped[doc_id]
            manifest.skipped_hashes.pop(doc_id, None)

    # -- indexing: engine → batches → writer thread ---------------------------------------------

    def _index(self, plan: SyncPlan) -> None:
        config = self.config
        assert self.writer.manifest is not None
        self.previously_indexed = set(self.writer.manifest.files)
        # A reader that cannot be made stops the build before any file is read.
        for ref in ReadLimits.of(config.data).readers:
            configured_reader(ref, config.source)
        items = work_items(config, plan)
        engine = make_engine(self.components, self.ahead)
        limit = flush_chunks(config)
        early = _EARLY_FLUSH_BATCHES * config.embedding.batch_size
        thread = _WriterThread(self._apply)
        started = time.perf_counter()
        try:
            with progress_bar("Indexing", total=len(items), enabled=self.show_progress) as bar:
                batch: list[Prepared] = []
                size = 0
                for prepared in engine.prepare(items):
                    if prepared.error is not None and self.strict:
                        raise DataError(
                            f"--strict: cannot index {prepared.item.doc_id} in {config.data.input_dir}: "
                            f"{prepared.error}"
                        )
                    batch.append(prepared)
                    size += len(prepared.chunks)
                    self.summary.chunks_embedded += len(prepared.chunks)
                    bar.advance()
                    bar.describe(f"Indexing ({self.summary.chunks_embedded} chunks embedded)")
                    if size >= limit or (size >= early and self._may_flush_early(thread, started)):
                        thread.put(batch)
                        batch, size = [], 0
                thread.put(batch)
                thread.finish()
        finally:
            # Waits for a write in progress (the lock is released only after it); batches still
            # queued after a failure are dropped: the next build indexes those files.
            thread.stop(discard=True)
            engine.close()
            route = getattr(getattr(engine, "encoder", None), "route", None)
            if route is not None and route() is not None:
                self.summary.dtype = route()
            for stage, seconds in engine.seconds.items():
                self.summary.stages[stage] = round(seconds, 3)

    def _may_flush_early(self, thread: _WriterThread, started: float) -> bool:
        """Whether to hand an idle writer a partial flush now, rather than leave all of it to write
        after the last chunk is embedded: only while commits (two manifest saves a flush, which
        grow with the index) have cost under ``_EARLY_FLUSH_COMMIT_SHARE`` of the build."""
        spent = self.writer.seconds["commit"]
        return thread.idle() and spent < _EARLY_FLUSH_COMMIT_SHARE * (time.perf_counter() - started)

    def _apply(self, batch: Sequence[Prepared]) -> None:
        """The writer thread's work for one batch: the only code that changes the index during the
        indexing phase, so the commit protocol runs exactly as in a sequential build."""
        writer = self.writer
        manifest = writer.manifest
        assert manifest is not None
        written: list[Written] = []
        for p in batch:
            doc_id = p.item.doc_id
            if p.error is not None:
                self._skip(p)
                continue
            manifest.skipped.pop(doc_id, None)
            manifest.skipped_hashes.pop(doc_id, None)
            self.summary.notes.extend({"file": doc_id, "note": note} for note in p.notes)
            written.append(Written(doc_id, p.item.hash, p.item.size, p.chunks, p.vectors))
            if doc_id in self.previously_indexed:
                self.summary.updated += 1
                self.summary.changes["updated"].append(doc_id)
            else:
                self.summary.added += 1
                self.summary.changes["added"].append(doc_id)
        if written:
            self._check_identity(written)
        writer.write(written)

    def _check_identity(self, written: Sequence[Written]) -> None:
        """Record the vectors' identity before the first write, and refuse another vector space
        (the model behind a name changed, say): checked against the vectors themselves, so a Ray
        build checks what its workers really produced."""
        if self._identity_checked:
            return
        manifest = self.writer.manifest
        assert manifest is not None
        record_identity(manifest, self.config, written, rebuild=self.rebuild)
        self._identity_checked = True

    def _skip(self, prepared: Prepared) -> None:
        doc_id, reason = prepared.item.doc_id, prepared.error or "unreadable"
        manifest = self.writer.manifest
        assert manifest is not None
        log.info("skipped %s: %s", doc_id, reason)  # listed by the summary (see _remember_unsupported)
        self.summary.skipped.append({"file": doc_id, "reason": reason})
        manifest.skipped[doc_id] = reason
        manifest.skipped_hashes[doc_id] = prepared.item.hash
        if doc_id in manifest.files:  # its old text no longer describes the file
            self.writer.remove([doc_id])


class _WriterThread:
    """Applies batches on one thread while the engine prepares the next. At most one batch waits
    while another is written; a failure there is raised in the building thread at its next put."""

    def __init__(self, apply: Any) -> None:
        self._apply = apply
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._discard = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="indexer-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if self._error is not None or self._discard:
                continue  # drain: after a failure nothing more is written
            self._busy = True
            try:
                self._apply(batch)
            except BaseException as exc:
                self._error = exc
            finally:
                self._busy = False

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def idle(self) -> bool:
        """Nothing is being written and nothing waits."""
        return not self._busy and self._queue.empty()

    def put(self, batch: list[Prepared]) -> None:
        if not batch:
            return
        while True:
            self._raise()
            try:
                self._queue.put(batch, timeout=0.2)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until every batch is written; raise what went wrong."""
        self.stop()
        self._raise()

    def stop(self, *, discard: bool = False) -> None:
        self._discard = self._discard or discard
        if self._thread.is_alive():
            while True:
                try:
                    self._queue.put(None, timeout=0.2)
                    break
                except queue.Full:
                    if not self._thread.is_alive():
                        break
            self._thread.join()


def _versions() -> dict[str, str]:
    return dict(_installed_versions())


@functools.cache  # read from the installed packages' metadata (tens of ms), once per process
def _installed_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions
