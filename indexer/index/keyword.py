"""The keyword (BM25) index: chunks and their terms in SQLite, updated chunk by chunk, searched
through an in-memory bm25s index made from them.

A build adds the chunks it writes and removes the ones it deletes, at the same points of the commit
protocol as the vector store (``index/index.py``), so nothing after a build reads the whole store
back, and an unchanged re-run does no keyword work at all. Like the vector store it may hold chunks
the manifest does not commit (a build in flight): searches skip those.

bm25s cannot add or remove documents (its score matrix bakes in the corpus statistics), so the
persistent, incremental part is ours: one SQLite row per chunk with its terms already tokenized.
A process that searches makes its bm25s index from those rows (no re-tokenizing) the first time,
and again only after a writer changed them (``PRAGMA data_version``). SQLite FTS5 was measured
out: its ``bm25()`` fixes k1 1.2 / b 0.75, below Lucene's 0.9 / 0.4 on the MS MARCO subset, and
scoring every posting in SQL took 100 ms a question at 20k chunks of a small vocabulary, where
bm25s takes a few.

We tokenize ourselves rather than through ``llama-index-retrievers-bm25``: its pattern (words of
two or more letters, stemmed) splits ``AUR-7731-X`` into ``aur``/``7731`` and drops ``E`` from
``E-214``, so identifiers, the very thing keyword search is here for, stop being findable as such.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from indexer.errors import StoreError
from indexer.import_without import import_without
from indexer.index.store import DOC_ID, FILE_HASH, Chunk, Committed, Hit, flat_metadata
from indexer.index.write_errors import disk_full_error, is_disk_full

log = logging.getLogger(__name__)

# 3: chunks and terms in SQLite (2 was a bm25s folder, which is dropped and refilled from the store).
FORMAT_VERSION = 3
# Lucene/Anserini's BM25 parameters, the reference BEIR baselines use. bm25s defaults to 1.5/0.75,
# which scored 0.0103 nDCG@10 lower on the MS MARCO subset (long passages are over-penalised).
BM25_K1 = 0.9
BM25_B = 0.4
# Parameters per SQLite statement, below every SQLite's limit (999 before 3.32).
_VARS = 900
# A searcher whose bm25s index takes longer than this to make (~30k chunks here) is remade at most
# once per ten times that while writes keep coming; a smaller one follows every write at once.
_REMAKE_FREE_S = 1.0

# A token is a run of word characters, possibly joined by - _ . / : (part numbers, SKUs, error
# codes, versions, file names). The joined form is indexed whole and also as its parts, so
# "AUR-7731-X" is found by "AUR-7731-X" (exactly, with a high IDF) and by "7731".
_TOKEN_RE = re.compile(r"\w+(?:[-_./:+#]\w+)*")
_SPLIT_RE = re.compile(r"[-_./:+#]")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
    row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL, file_hash TEXT NOT NULL,
    terms TEXT NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id);
"""


@lru_cache(maxsize=1)
def _stem_word() -> Callable[[str], str]:
    import Stemmer

    return Stemmer.Stemmer("english").stemWord


@lru_cache(maxsize=1)
def _bm25s() -> Any:
    """bm25s, imported on first use, without SciPy: bm25s imports it for a score-matrix backend
    (``csc_backend="scipy"``) that this index never asks for (its default, numpy's, is used), and
    that import was 0.2 s of a cold query's 1.1 s (``indexer/import_without.py``). Its import sets
    its own logger to DEBUG, which made every build print "Building index from tokens": put it back
    to warnings."""
    bm25s = import_without("bm25s", {"scipy"})

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    """bm25s's English list: the one our measured BM25 baselines were made with. Read from its
    module alone, since the chunking workers' fork server needs it: importing the bm25s package
    imports and runs JAX where that is installed (``bm25s.selection``), whose threads make the
    server unsafe to fork, and whose GPU plugin initialised CUDA on a GPU machine."""
    import importlib.util

    package = importlib.util.find_spec("bm25s")  # finds it without importing it
    if package is None or not package.submodule_search_locations:
        raise ModuleNotFoundError("bm25s is not installed: pip install bm25s", name="bm25s")
    spec = importlib.util.spec_from_file_location(
        "indexer_bm25s_stopwords", Path(package.submodule_search_locations[0]) / "stopwords.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return frozenset(module.STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """Lower-cased terms for BM25: words stemmed (Snowball) without stop words; identifiers
    (anything joined by - _ . / : + #) whole and unstemmed, plus their parts."""
    terms: list[str] = []
    for whole, parts in _terms(text):
        terms.append(whole)
        terms.extend(parts)
    return terms


def query_terms(text: str, vocabulary: Container[str]) -> list[str]:
    """The terms to search for: an identifier the index knows whole is searched whole, so
    "AUR-7731-X" ranks the passage naming it above ones that only share "AUR" and "7731"; one
    it does not know ("AUR-7731", a partial code) falls back to its parts."""
    terms: list[str] = []
    for whole, parts in _terms(text):
        if whole in vocabulary or not parts:
            terms.append(whole)
        else:
            terms.extend(parts)
    return [t for t in terms if t in vocabulary]


def chunk_terms(text: str) -> str:
    """A chunk's terms as the keyword index stores them."""
    return " ".join(tokenize(text))


def _terms(text: str) -> Iterator[tuple[str, list[str]]]:
    word_term = _word_term
    for token in _TOKEN_RE.findall(text.lower()):
        parts = [] if token.isalnum() else [p for p in _SPLIT_RE.split(token) if p]
        if len(parts) > 1:
            yield token, parts
        elif (term := word_term(token)) is not None:
            yield term, []


@lru_cache(maxsize=1 << 16)
def _word_term(token: str) -> str | None:
    """One word's term (``None``: a stop word). Cached because words repeat (Zipf): this made
    keyword terms a third of a chunking worker's time."""
    if token in _stopwords():
        return None
    return token if any(c.isdigit() for c in token) else _stem_word()(token)


def keyword_file(persist_dir: Path, collection: str) -> Path:
    """Where the keyword index of a collection (one generation of an index) lives."""
    return persist_dir / f"keyword-{collection}.sqlite3"


class MetadataFilter(Protocol):
    """What a search may return, by chunk metadata (``query.filters.Filters``); hashable, so the
    mask it gives is computed once per index state."""

    def matches(self, metadata: Mapping[str, Any]) -> bool: ...

    def __hash__(self) -> int: ...


@dataclass
class _Snapshot:
    """The rows as one bm25s index, in row order, and the masks derived from them."""

    version: tuple[int, int]
    made_at: float
    seconds: float  # what making it took
    rows: Any  # numpy array of SQLite row ids, position = bm25s document number
    doc_ids: list[str]
    hashes: list[str]
    bm25: Any = None
    metadatas: list[dict[str, Any]] | None = None
    masks: dict[Any, Any] = field(default_factory=dict)


class KeywordIndex:
    """BM25 over one collection's chunks. ``path=None`` keeps it in memory (an index on a Chroma
    server, where each querying process follows the server's chunks itself)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._writes = 0  # this connection's own commits (data_version counts only others')
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread off: the server answers from a thread pool; a lock serialises use.
            self._db = sqlite3.connect(
                ":memory:" if path is None else str(path), timeout=30, check_same_thread=False
            )
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._open()
        except sqlite3.DatabaseError as exc:
            # SQLite says "disk I/O error" when the disk has no room for the WAL it opens.
            if path is not None and is_disk_full(exc, path.parent):
                raise disk_full_error("open the keyword index", path) from None
            raise StoreError(f"cannot open the keyword index {path}: {exc}") from None

    def _open(self) -> None:
        version = None
        try:
            found = self._db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
            version = int(found[0]) if found else None
        except sqlite3.OperationalError:  # a new file: no tables yet
            pass
        if version == FORMAT_VERSION:
            return  # nothing to write: a reader may open an index in a read-only folder
        with self._db:
            if version is not None:
                # Derived data of another format: start afresh; a writer refills it from the store.
                self._db.executescript(
                    "DROP TABLE IF EXISTS chunks; DROP TABLE IF EXISTS postings; DROP TABLE meta;"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('format_version', ?)", (str(FORMAT_VERSION),)
            )

    def close(self) -> None:
        self._db.close()

    def meta(self, key: str) -> str | None:
        found = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return found[0] if found else None

    def set_meta(self, key: str, value: str) -> None:
        with self._writing():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- writing (a build, under the writer lock) --------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[None]:
        with self._lock, self._db:
            yield
        self._writes += 1

    def add(self, chunks: Sequence[Chunk] | Sequence[Hit]) -> None:
        """Index chunks (a chunk already present under its id is replaced)."""
        rows = []
        for chunk in chunks:
            meta = flat_metadata(chunk.metadata)
            rows.append((
                chunk.id, str(meta.get(DOC_ID, "")), str(meta.get(FILE_HASH, "")),
                getattr(chunk, "terms", None) or chunk_terms(chunk.text), chunk.text, json.dumps(meta),
            ))  # fmt: skip
        with self._writing():
            self._db.executemany(
                "INSERT OR REPLACE INTO chunks(id, doc_id, file_hash, terms, text, metadata) "
                "VALUES (?,?,?,?,?,?)",
                rows,
            )

    def delete_documents(self, doc_ids: Sequence[str], *, keep_hash: str | None = None) -> None:
        """Remove the chunks of these documents; with ``keep_hash``, only other versions'."""
        with self._writing():
            for start in range(0, len(doc_ids), _VARS):
                part = list(doc_ids[start : start + _VARS])
                marks = ",".join("?" * len(part))
                if keep_hash is None:
                    self._db.execute(f"DELETE FROM chunks WHERE doc_id IN ({marks})", part)
                else:
                    self._db.execute(
                        f"DELETE FROM chunks WHERE doc_id IN ({marks}) AND file_hash != ?", [*part, keep_hash]
                    )

    def delete_ids(self, ids: Sequence[str]) -> None:
        with self._writing():
            for start in range(0, len(ids), _VARS):
                part = list(ids[start : start + _VARS])
                self._db.execute(f"DELETE FROM chunks WHERE id IN ({','.join('?' * len(part))})", part)

    # -- what it holds ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def versions(self) -> dict[str, set[str]]:
        """The file hashes held per document (more than one while a new version is written)."""
        held: dict[str, set[str]] = {}
        for doc_id, digest in self._db.execute("SELECT DISTINCT doc_id, file_hash FROM chunks"):
            held.setdefault(doc_id, set()).add(digest)
        return held

    def follow(self, committed: Committed, fetch: Callable[[list[str]], Iterable[Hit]]) -> int:
        """Make it hold exactly the committed versions: drop other versions, and add the chunks of
        committed documents it lacks, fetched from the vector store (by document). Returns how many
        documents changed; the cost follows the change, not the index size."""
        held = self.versions()
        stale = [d for d, hashes in held.items() if hashes != {committed.hashes.get(d)}]
        missing = [d for d, digest in committed.hashes.items() if digest not in held.get(d, ())]
        for doc_id in stale:
            keep = committed.hashes.get(doc_id)
            if keep is None:
                self.delete_documents([doc_id])
            else:
                self.delete_documents([doc_id], keep_hash=keep)
        for start in range(0, len(missing), 256):
            part = missing[start : start + 256]
            self.delete_documents(part)  # a partial copy of a version, if any
            self.add([h for h in fetch(part) if committed.holds(h)])
        return len(set(stale) | set(missing))

    # -- search -----------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        top_k: int,
        *,
        committed: Committed | None = None,
        where: MetadataFilter | None = None,
    ) -> list[Hit]:
        """Up to ``top_k`` chunks with a positive BM25 score, best first, among those ``committed``
        holds (all, when ``None``) that ``where`` matches."""
        if top_k <= 0:
            return []
        with self._lock:
            snapshot = self._current()
            if snapshot.bm25 is None:
                return []
            terms = query_terms(query, snapshot.bm25.vocab_dict)
            if not terms:
                return []
            mask = self._mask(snapshot, committed, where)
            k = min(top_k, len(snapshot.doc_ids))
            docs, scores = snapshot.bm25.retrieve(
                [terms], k=k, show_progress=False, n_threads=1, weight_mask=mask
            )
            found = zip(docs[0], scores[0], strict=True)
            ranked = [(int(snapshot.rows[int(d)]), float(s)) for d, s in found if s > 0]
            return self._hits(ranked)

    def score_scale(self, query: str) -> float:
        """What a BM25 score for ``query`` is divided by to read the same across questions and
        collections (``indexer.query.relevance``): the geometric mean of the question's ceiling
        (the sum of its terms' IDF; Lucene's BM25 gives a term at most its IDF) and the
        collection's (the IDF of a term no chunk holds, which is what each of the question's
        unknown terms counts as). The question's ceiling alone marks down long questions: at the
        best threshold it answered 57% of the Paul Graham set's (long) questions, this 80%
        (benchmarks/abstention.py, before the short sample questions joined the sweep). 0 for a
        question without terms or an empty index."""
        import math

        with self._lock:
            snapshot = self._current()
            if snapshot.bm25 is None:
                return 0.0
            vocabulary = snapshot.bm25.vocab_dict
            starts = snapshot.bm25.scores["indptr"]
            total = len(snapshot.doc_ids)
            ceiling = 0.0
            for whole, parts in _terms(query):
                for term in [whole] if whole in vocabulary or not parts else parts:
                    index = vocabulary.get(term)
                    df = 0 if index is None else int(starts[index + 1] - starts[index])
                    ceiling += math.log(1 + (total - df + 0.5) / (df + 0.5))
            return math.sqrt(ceiling * math.log(1 + (total + 0.5) / 0.5))

    def _current(self) -> _Snapshot:
        """The bm25s index of the rows as they are now: made again only after a write."""
        version = (int(self._db.execute("PRAGMA data_version").fetchone()[0]), self._writes)
        last = self._snapshot
        if last is not None and last.version == version:
            return last
        started = time.monotonic()
        if last is not None and last.seconds > _REMAKE_FREE_S and started - last.made_at < 10 * last.seconds:
            # A large index that a build keeps changing: spend at most a tenth of the time remaking
            # it. Meanwhile the last one serves, minus what is no longer committed (the masks).
            return last
        import numpy as np

        rows, doc_ids, hashes, corpus = [], [], [], []
        for row, doc_id, digest, terms in self._db.execute(
            "SELECT row, doc_id, file_hash, terms FROM chunks ORDER BY row"
        ):
            rows.append(row)
            doc_ids.append(doc_id)
            hashes.append(digest)
            corpus.append(terms.split() or [""])  # bm25s counts an empty text as one empty token
        snapshot = _Snapshot(version, started, 0.0, np.asarray(rows, dtype=np.int64), doc_ids, hashes)
        if rows:
            snapshot.bm25 = _bm25s().BM25(k1=BM25_K1, b=BM25_B, method="lucene")
            snapshot.bm25.index(corpus, show_progress=False)
        snapshot.seconds = time.monotonic() - started
        self._snapshot = snapshot
        return snapshot

    def _mask(self, snapshot: _Snapshot, committed: Committed | None, where: MetadataFilter | None) -> Any:
        """One weight per chunk, 1 for those a search may return; ``None`` when all may."""
        import numpy as np

        parts = []
        key: tuple[str, Any]
        if committed is not None:
            key = ("committed", id(committed))
            if key not in snapshot.masks:
                held = committed.hashes
                snapshot.masks = {k: v for k, v in snapshot.masks.items() if k[0] != "committed"}
                holds = (held.get(d) == h for d, h in zip(snapshot.doc_ids, snapshot.hashes, strict=True))
                snapshot.masks[key] = (
                    committed,
                    np.fromiter(holds, dtype=np.float32, count=len(snapshot.doc_ids)),
                )
            parts.append(snapshot.masks[key][1])
        if where is not None:
            key = ("where", where)
            if key not in snapshot.masks:
                if snapshot.metadatas is None:
                    snapshot.metadatas = [
                        json.loads(m) for (m,) in self._db.execute("SELECT metadata FROM chunks ORDER BY row")
                    ]
                allowed = (where.matches(m) for m in snapshot.metadatas)
                snapshot.masks[key] = (
                    where,
                    np.fromiter(allowed, dtype=np.float32, count=len(snapshot.doc_ids)),
                )
            parts.append(snapshot.masks[key][1])
        if not parts:
            return None
        mask = parts[0]
        for part in parts[1:]:
            mask = mask * part
        return mask if mask.min() < 1 else None

    def _hits(self, scored: list[tuple[int, float]]) -> list[Hit]:
        rows: dict[int, tuple[str, str, str]] = {}
        ids = [row for row, _ in scored]
        for start in range(0, len(ids), _VARS):
            part = ids[start : start + _VARS]
            for row, chunk_id, text, meta in self._db.execute(
                f"SELECT row, id, text, metadata FROM chunks WHERE row IN ({','.join('?' * len(part))})", part
            ):
                rows[row] = (chunk_id, text, meta)
        return [
            Hit(id=rows[row][0], text=rows[row][1], metadata=json.loads(rows[row][2]), score=score)
            for row, score in scored
            if row in rows
        ]
