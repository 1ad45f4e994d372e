"""One configured index and its single owner: the Chroma client, the chunk store, the manifest and
the committed view of it, the keyword index, and the commit protocol every write goes through.

Readers (queries, ``status``, the server) ask it for the *current* committed state; each question
costs a ``stat`` of the manifest (or, on a Chroma server, one small read of its revision), never a
pass over the manifest, so a long-running process follows builds made by other processes.

Writers (file builds, record syncs, eval indexes) hold the writer lock and go through an
``IndexWriter``. The manifest is the commit point (``index/manifest.py``); for each batch:

1. the documents are recorded as ``pending`` in the manifest (intent);
2. their new chunks are written, to the vector store and the keyword index, under ids unique to
   the document's version;
3. the manifest is saved naming the new versions (commit: queries see them from now on);
4. old versions are removed, and the documents leave ``pending`` with the next save.

Deleted documents leave the manifest first and the stores after. Whatever moment a writer is
killed at, the manifest describes a complete index (searches hide everything else), and the next
writer removes whatever ``pending`` names before doing anything; a count check with a full sweep
backs that up. A rebuild writes a new collection (a new *generation*) and switches the manifest to
it only when it is complete, so the old index answers queries until then.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from indexer.config.models import VectorStoreConfig
from indexer.errors import StoreError
from indexer.index import chroma
from indexer.index.keyword import KeywordIndex, keyword_file
from indexer.index.lock import writer_lock
from indexer.index.manifest import (
    CommittedView,
    FileRecord,
    Manifest,
    ManifestDamaged,
    ManifestFile,
    ManifestFileForServer,
)
from indexer.index.store import Chunk, ChunkStore, Committed
from indexer.index.write_errors import disk_full_error, free_bytes

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a write takes on disk, so that a build stops *before* the disk is full. A write that runs out
# of room midway can leave Chroma's vector segment half written (its HNSW files are rewritten in
# place), and then even the committed index no longer answers; Chroma also needs some room to open
# its database and to search at all. Measured on embedded Chroma 1.5.9 (tests/adversarial/
# test_full_disk.py has the measurement): a chunk's text is stored about 5 times (Chroma's log, its
# metadata table and that table's index, the keyword index and its WAL), its vector twice (the log
# and the HNSW segment), plus ~1 KB of rows and links; the estimate doubles that.
ROOM_PER_TEXT_BYTE = 10
ROOM_PER_VECTOR_BYTE = 4
ROOM_PER_CHUNK = 2048
# Kept free by every build: Chroma's journal and the keyword index's WAL (checkpointed at 4 MB) grow
# before they shrink, and a reader needs a little room to open Chroma's database.
ROOM_RESERVE = 4 * 1024 * 1024
_COMPLETE = "complete"  # keyword index meta key: it holds every committed chunk (a writer made it so)


def physical_collection(base: str, generation: int) -> str:
    """The collection a generation of an index lives in (a rebuild starts a new generation)."""
    return base if generation == 0 else f"{base[:500]}-g{generation}"


def generation_of(base: str, name: str) -> int:
    """The generation ``name`` holds for the index ``base``, or -1 when it is not one of its."""
    if name == base:
        return 0
    prefix = f"{base[:500]}-g"
    suffix = name.removeprefix(prefix)
    return int(suffix) if name.startswith(prefix) and suffix.isdigit() else -1


class Index:
    """The index ``vector_store`` describes. Cheap to make: nothing opens until first used."""

    def __init__(self, vector_store: VectorStoreConfig) -> None:
        self.config = vector_store
        self._keyword: tuple[str, KeywordIndex] | None = None
        self._keyword_revision: Any = None
        self._client_seen: Any = None  # the manifest version the embedded client was opened at
        # A temporary copy of the Chroma files that the client reads, when the index folder cannot
        # be written (read-only, or a full disk): see ``chroma.open_snapshot``.
        self.snapshot: Path | None = None
        self._writing = False
        # A reader's reopen closes the client, which a write in another thread of this process
        # (`serve --watch`'s sync) may be using: reopens and the start of a write take turns, and
        # no reader reopens while a write runs (its own client sees its writes anyway).
        self._client_turn = threading.RLock()

    # -- handles ----------------------------------------------------------------------------------

    @cached_property
    def client(self) -> ClientAPI:
        folder = self.config.persist_dir
        if folder is not None:
            self._client_seen = ManifestFile(folder).version_token()
        try:
            return chroma.open_client(self.config)
        except chroma.UnwritableStore as exc:
            if self._writing:
                raise
            # A reader: the committed index still answers, from a copy Chroma may write to.
            client, self.snapshot = chroma.open_snapshot(self.config)
            atexit.register(self._drop_snapshot, self.snapshot)
            why = "its disk is full" if exc.disk_full else "it is read-only"
            log.warning(
                "the index folder %s cannot be written (%s): answering from a temporary copy of it "
                "in %s, removed on exit",
                folder,
                why,
                self.snapshot,
            )
            return client

    def reading(self, work: Callable[[], T]) -> T:
        """Run a read of the live index. An embedded Chroma keeps its vector index in memory per
        process and does not see another process's writes: the client is opened again when a
        build elsewhere committed since, and once more if the read fails midway (that build had
        just removed chunks the old copy still names)."""
        if self.config.persist_dir is None:
            return work()
        with self._client_turn:
            if (
                not self._writing
                and "client" in self.__dict__
                and self.manifest_file.version_token() != self._client_seen
            ):
                self._reopen()
        try:
            return work()
        except StoreError:
            with self._client_turn:
                if self._writing:
                    raise
                self._reopen()
            return work()

    def _reopen(self) -> None:
        client = self.__dict__.pop("client", None)
        if client is not None:
            client.close()  # releases Chroma's per-process system when nothing else holds it
        if self.snapshot is not None:
            if self._keyword is not None and self._keyword[1].path is not None:
                self._keyword[1].close()  # it reads the copy's keyword file
                self._keyword = None
            self._drop_snapshot(self.snapshot)
            self.snapshot = None

    @staticmethod
    def _drop_snapshot(snapshot: Path) -> None:
        chroma.remove_snapshot(snapshot)

    @cached_property
    def manifest_file(self) -> ManifestFile:
        if self.config.persist_dir is not None:
            return ManifestFile(self.config.persist_dir)
        return ManifestFileForServer(self.client, self.config.collection)

    @cached_property
    def committed_view(self) -> CommittedView:
        return CommittedView(self.manifest_file)

    @property
    def location(self) -> str:
        """Where the index lives, as a user would name it: its folder, or the server's address."""
        return chroma.location(self.config)

    def current(self) -> Manifest | None:
        """The committed manifest now (re-read only when another process committed since)."""
        return self.committed_view.current()

    def committed(self) -> Committed | None:
        return self.committed_view.committed()

    def database_missing(self) -> bool:
        """An embedded index whose Chroma database file is gone (deleted by hand, a bad restore)."""
        folder = self.config.persist_dir
        return folder is not None and not (folder / chroma.DATABASE_FILE).exists()

    def set_aside_damaged(self) -> Path | None:
        """For a rebuild: when the embedded Chroma database will not open (damaged on disk), move its
        files aside into a ``damaged-chroma-TIME`` folder of the index folder, never deleting them,
        so the rebuild starts from an empty database. Returns that folder; ``None`` when the database
        opens (or the index is on a Chroma server). A database that cannot be opened because its
        folder cannot be written (a full disk, read-only) is sound: that error is raised instead."""
        folder = self.config.persist_dir
        if folder is None:
            return None
        try:
            self.client  # noqa: B018 - opening it is the test
        except chroma.UnwritableStore:
            raise
        except StoreError:
            kept = chroma.set_aside_database(folder)
            if kept is None:
                raise
            log.warning("the Chroma database cannot be opened; rebuilding (its files are kept in %s)", kept)
            return kept
        return None

    def collection_name(self) -> str:
        """The live collection: the configured name, or its ``NAME-gN`` after a rebuild."""
        manifest = self.current()
        return (manifest.collection if manifest else None) or self.config.collection

    def chunk_store(self, *, create: bool, collection: str | None = None) -> ChunkStore | None:
        """The index's chunks: by default in the collection the manifest names, whose searches show
        only the chunks the manifest commits."""
        if not create and self.database_missing():
            return None  # opening the client would create an empty database in its place
        name = collection or self.collection_name()
        found = chroma.get_collection(self.client, self.config, create=create, name=name)
        if found is None:
            return None
        return ChunkStore(
            found,
            self.client.get_max_batch_size(),
            self.committed,
            folder=self.config.persist_dir,
            store_documents=self.config.store_documents,
        )

    def generations(self) -> list[str]:
        """The collections of this index's generations that exist (see ``physical_collection``)."""
        base = self.config.collection
        return [n for n in chroma.collection_names(self.client) if generation_of(base, n) >= 0]

    def drop_collection(self, name: str) -> None:
        if chroma.get_collection(self.client, self.config, create=False, name=name) is not None:
            self.client.delete_collection(name)
        if self.config.persist_dir is not None:
            if self._keyword is not None and self._keyword[0] == name:
                self._keyword[1].close()
                self._keyword = None
            path = keyword_file(self.config.persist_dir, name)
            for suffix in ("", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)

    # -- keyword search ---------------------------------------------------------------------------

    def keyword_index(self, store: ChunkStore) -> tuple[KeywordIndex, str | None]:
        """The keyword index of the live collection, as queries should search it, and a notice when
        it had to be made in memory. Searches skip chunks the manifest does not commit."""
        name = store.name
        # The copy's keyword file when reading a copy: SQLite cannot open a WAL database in a
        # read-only folder without its -shm file.
        folder = self.snapshot or self.config.persist_dir
        if self._keyword is None or self._keyword[0] != name:
            if self._keyword is not None:
                self._keyword[1].close()
            index = None
            if folder is not None and keyword_file(folder, name).exists():
                index = _open_keyword_file(keyword_file(folder, name))
            self._keyword = (name, index or KeywordIndex(None))
            self._keyword_revision = object()
        keyword = self._keyword[1]
        if keyword.path is not None:
            return keyword, None  # kept in step with the manifest by every writer
        # In memory (a server index, or an embedded one without its file): follow the committed
        # state by what changed since the last question.
        committed = self.committed()
        revision = self.committed_view.revision()
        if committed is not None and revision != self._keyword_revision:
            keyword.follow(committed, store.chunks_of)
            self._keyword_revision = revision
        notice = None
        if self.config.persist_dir is not None:
            where = keyword_file(self.config.persist_dir, name)
            notice = (
                f"the keyword index at {where} is missing, incomplete or cannot be opened: made "
                "it in memory from the vector store for this session; run `indexer build CONFIG` "
                "to persist it"
            )
        return keyword, notice

    # -- writing ----------------------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator[IndexWriter]:
        """The one writer of this index: holds the writer lock while the block runs."""
        folder = self.config.persist_dir
        with writer_lock(
            folder,
            client=self.client if folder is None else None,
            collection=self.config.collection,
            ttl=self.config.lease_ttl,
        ):
            with self._client_turn:
                if self.snapshot is not None:
                    # This process opened the index for reading from a copy: a write must reach
                    # the folder itself, so open it afresh (and fail there, with the reason, if it
                    # still cannot be written).
                    self._reopen()
                self._writing = True
            writer = IndexWriter(self)
            try:
                yield writer
            finally:
                self._writing = False
                writer.close()


def _open_keyword_file(path: Path) -> KeywordIndex | None:
    """The keyword index in ``path`` when it is complete and opens; ``None`` to make it in memory
    instead. SQLite cannot open a WAL database it may not create the -shm file of: on a full disk,
    or a read-only folder, the vector store still has every chunk's text."""
    import sqlite3

    try:
        index = KeywordIndex(path)
    except StoreError as exc:
        log.debug("keyword index %s: %s", path, exc)
        return None
    try:
        complete = index.meta(_COMPLETE) == "1"  # not: made by an older indexer, or never finished
    except sqlite3.Error as exc:
        log.debug("keyword index %s: %s", path, exc)
        complete = False
    if not complete:
        index.close()
        return None
    return index


@dataclass
class Written:
    """One document's new version, ready to commit: its chunks with their vectors."""

    doc_id: str
    hash: str
    size: int
    chunks: list[Chunk]
    vectors: Any


def room_needed(batch: Sequence[Written]) -> int:
    """Bytes of disk that writing ``batch`` may take, with ``ROOM_RESERVE`` kept free."""
    need = ROOM_RESERVE
    for w in batch:
        for chunk in w.chunks:
            need += ROOM_PER_CHUNK + ROOM_PER_TEXT_BYTE * (len(chunk.text) + len(str(chunk.metadata)))
        if w.vectors is not None and len(w.chunks):
            need += ROOM_PER_VECTOR_BYTE * len(w.chunks) * int(w.vectors.shape[-1]) * 4
        elif w.chunks and w.chunks[0].embedding is not None:
            need += ROOM_PER_VECTOR_BYTE * len(w.chunks) * len(w.chunks[0].embedding) * 4
    return need


class IndexWriter:
    """The commit protocol, for the one process holding the writer lock. ``manifest`` is the
    working copy; ``commit()`` publishes it."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.manifest: Manifest | None = None
        self.previous: Manifest | None = None
        self.store: ChunkStore | None = None
        self.keyword: KeywordIndex | None = None
        self.staging = False
        # Busy seconds per step: write, keyword, commit.
        self.seconds: defaultdict[str, float] = defaultdict(float)

    # -- opening ----------------------------------------------------------------------------------

    def begin(
        self,
        *,
        rebuild: bool,
        fresh: Callable[[str, int], Manifest],
        check: Callable[[Manifest], None] = lambda manifest: None,
    ) -> Manifest:
        """Open the index for writing and finish whatever a killed writer left. ``fresh(collection,
        generation)`` makes a new manifest; ``check`` refuses a previous one that does not match.
        A rebuild stages a new generation; the old one serves queries until ``finish``."""
        index = self.index
        leftovers: list[str] = []
        try:
            previous = index.manifest_file.load()
        except ManifestDamaged:
            if not rebuild:
                raise
            # A rebuild over a manifest nobody can read: keep a copy of it, start a generation
            # above every one of ours, and drop the others once the new one is committed. Only
            # collections named as ours (the configured name and its -gN generations) are touched.
            kept = index.manifest_file.set_aside()
            log.warning("the index manifest is damaged; rebuilding (the old one is kept as %s)", kept)
            previous = None
            leftovers = sorted(index.generations())
        self.previous = previous
        if previous is not None and not rebuild:
            check(previous)
        base = index.config.collection
        if rebuild:
            if previous is not None:
                generation = previous.generation + 1
            else:
                generation = max((generation_of(base, n) for n in leftovers), default=-1) + 1
            manifest = fresh(physical_collection(base, generation), generation)
            manifest.retired = [n for n in leftovers if n != manifest.collection]
            self.staging = previous is not None
            if previous is not None:
                # Record the new collection as retired-unless-committed, so that a rebuild killed
                # midway leaves nothing behind that a later writer would not remove.
                previous.retired = sorted({*previous.retired, str(manifest.collection)})
                self._save(previous)
            index.drop_collection(str(manifest.collection))  # a killed rebuild's leftovers
            self.manifest = manifest
            self._open_stores(str(manifest.collection))
        else:
            manifest = previous if previous is not None else fresh(base, 0)
            self.manifest = manifest
            store = self._open_stores(manifest.collection or base)
            if previous is None and store.count() > 0:
                raise StoreError(
                    f"collection {store.name!r} already holds {store.count()} vectors but has no "
                    f"indexer manifest at {index.manifest_file.path}: it was not built by indexer, or "
                    "its manifest was removed. Use `indexer build CONFIG --rebuild` to replace it, "
                    "or set vector_store.collection to another name."
                )
            self.commit()
            self._drop_retired()
            self._recover()
        assert self.store is not None
        self.manifest.vector_index = self.store.index_settings()
        return self.manifest

    def _open_stores(self, name: str) -> ChunkStore:
        store = self.index.chunk_store(create=True, collection=name)
        assert store is not None
        self.store = store
        folder = self.index.config.persist_dir
        if folder is not None:
            self.keyword = KeywordIndex(keyword_file(folder, name))
            # The bm25s folder of keyword format 2, replaced by the file above.
            shutil.rmtree(folder / f"keyword-{name}", ignore_errors=True)
        return store

    # -- commit points ----------------------------------------------------------------------------

    def commit(self) -> None:
        """Save the manifest, except while staging a rebuild (the old index stays the live one)."""
        assert self.manifest is not None
        if not self.staging:
            self.manifest.touch()
            self._save(self.manifest)

    def _save(self, manifest: Manifest) -> None:
        with self._timed("commit"):
            self.index.manifest_file.save(manifest)

    @contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        import time

        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] += time.perf_counter() - started

    # -- changes ----------------------------------------------------------------------------------

    def remove(self, doc_ids: Sequence[str]) -> None:
        """Take documents out: the manifest first (queries stop seeing them), then the chunks."""
        manifest, store = self.manifest, self.store
        assert manifest is not None and store is not None
        if not doc_ids:
            return
        for doc_id in doc_ids:
            manifest.files.pop(doc_id, None)
        manifest.pending = sorted({*manifest.pending, *doc_ids})
        self.commit()
        with self._timed("write"):
            store.delete_documents(list(doc_ids))
        if self.keyword is not None:
            with self._timed("keyword"):
                self.keyword.delete_documents(list(doc_ids))
        manifest.pending = sorted(set(manifest.pending) - set(doc_ids))

    def write(self, batch: Sequence[Written]) -> None:
        """Add new versions of documents: intent, chunks, commit, then their old versions go."""
        manifest, store = self.manifest, self.store
        assert manifest is not None and store is not None
        if not batch:
            return
        self._check_room(batch)
        ids = [w.doc_id for w in batch]
        manifest.pending = sorted({*manifest.pending, *ids})
        self.commit()  # intent: the next writer cleans these up if this one dies
        chunks = [c for w in batch for c in w.chunks]
        with self._timed("write"):
            if chunks:
                import numpy as np

                vectors = [w.vectors for w in batch if len(w.chunks)]
                store.add(chunks, np.concatenate(vectors) if len(vectors) > 1 else vectors[0])
        if self.keyword is not None:
            with self._timed("keyword"):
                self.keyword.add(chunks)
        replaced = [w for w in batch if w.doc_id in manifest.files]
        for w in batch:
            manifest.files[w.doc_id] = FileRecord(hash=w.hash, chunks=len(w.chunks), size=w.size)
        self.commit()  # commit: queries see the new versions from here on
        for w in replaced:
            with self._timed("write"):
                store.delete_document(w.doc_id, keep_hash=w.hash)
            if self.keyword is not None:
                with self._timed("keyword"):
                    self.keyword.delete_documents([w.doc_id], keep_hash=w.hash)
        manifest.pending = sorted(set(manifest.pending) - set(ids))  # saved with the next commit

    def _check_room(self, batch: Sequence[Written]) -> None:
        """Refuse a write the index folder's disk has no room for (see ``ROOM_RESERVE``)."""
        folder = self.index.config.persist_dir
        if folder is None:
            return  # a Chroma server minds its own disk
        try:  # two saves of the manifest per write, each a new file beside the old one
            manifest_bytes = 2 * self.index.manifest_file.path.stat().st_size
        except OSError:
            manifest_bytes = 0
        need = room_needed(batch) + manifest_bytes
        free = free_bytes(folder)
        if free < need:
            mb = 1024 * 1024
            chunks = sum(len(w.chunks) for w in batch)
            raise disk_full_error(
                f"write {chunks} more chunk(s)",
                folder,
                f" ({free / mb:.1f} MB free; the write needs about {(need - ROOM_RESERVE) / mb:.1f} MB, "
                f"and {ROOM_RESERVE // mb} MB stay free so that the index can still be opened and "
                "searched)",
            )

    def finish(self) -> Manifest:
        """Publish the working manifest: a rebuild switches to its new collection here."""
        manifest = self.manifest
        assert manifest is not None
        if self.staging:
            previous = self.previous
            old = (previous.collection if previous is not None else None) or self.index.config.collection
            retired = set(previous.retired if previous is not None else ()) | {old}
            manifest.retired = sorted(retired - {str(manifest.collection)})
            self.staging = False
        self.commit()
        self._drop_retired()  # a rebuild's old generation, or leftovers of a damaged manifest
        if self.keyword is not None:
            self.keyword.set_meta(_COMPLETE, "1")
        return manifest

    def close(self) -> None:
        if self.keyword is not None:
            self.keyword.close()

    # -- recovery ---------------------------------------------------------------------------------

    def _drop_retired(self) -> None:
        manifest = self.manifest
        assert manifest is not None
        current = manifest.collection or self.index.config.collection
        if not manifest.retired:
            return
        for name in manifest.retired:
            if name != current:
                self.index.drop_collection(name)
        manifest.retired = []
        self.commit()

    def _recover(self) -> None:
        """Finish what a killed writer left: its pending documents first, then a full sweep if the
        collection and the manifest still disagree on the chunk count; then the keyword index is
        brought in line with the manifest (only what differs is read from the store)."""
        manifest, store = self.manifest, self.store
        assert manifest is not None and store is not None
        if manifest.pending:
            log.info("finishing an interrupted build: cleaning %d document(s)", len(manifest.pending))
            for doc_id in manifest.pending:
                record = manifest.files.get(doc_id)
                store.delete_document(doc_id, keep_hash=record.hash if record else None)
            manifest.pending = []
            self.commit()
        if store.count() != manifest.chunk_count:
            self._sweep()
        if self.keyword is not None:
            with self._timed("keyword"):
                self.keyword.follow(manifest.committed(), store.chunks_of)
                self.keyword.set_meta(_COMPLETE, "1")

    def _sweep(self) -> None:
        manifest, store = self.manifest, self.store
        assert manifest is not None and store is not None
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
        if damaged:  # chunks lost outside indexer: index those documents again
            log.warning("%d document(s) had missing chunks and will be indexed again", len(damaged))
            self.remove(damaged)
