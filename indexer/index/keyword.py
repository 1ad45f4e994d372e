"""The keyword (BM25) index: an inverted index in SQLite, updated chunk by chunk.

A build adds the chunks it writes and removes the ones it deletes, at the same points of the commit
protocol as the vector store (``index/index.py``), so nothing after a build reads the whole store
back, and an unchanged re-run does no keyword work at all. Like the vector store it may hold chunks
the manifest does not commit (a build in flight): searches skip those.

Hand-written scoring over SQLite, because neither library that could do this keeps our quality:
``bm25s`` cannot add or remove documents (its score matrix bakes in the corpus statistics, so any
change means a full rebuild), and SQLite FTS5's ``bm25()`` fixes k1 1.2 / b 0.75, which ranks
long passages lower than Lucene's 0.9 / 0.4 (0.0103 nDCG@10 less on the MS MARCO subset for
bm25s's similar defaults). The postings table keeps term frequencies; the score is Lucene's BM25,
computed by SQLite at query time from the current corpus statistics, so it equals a from-scratch
``bm25s`` (method "lucene") index of the same chunks.

We tokenize ourselves rather than through ``llama-index-retrievers-bm25``: its pattern (words of
two or more letters, stemmed) splits ``AUR-7731-X`` into ``aur``/``7731`` and drops ``E`` from
``E-214``, so identifiers, the very thing keyword search is here for, stop being findable as such.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from indexer.errors import StoreError
from indexer.index.store import DOC_ID, FILE_HASH, Chunk, Committed, Hit, flat_metadata

log = logging.getLogger(__name__)

# 3: an SQLite inverted index (2 was a bm25s folder, which is ignored and rebuilt from the store).
FORMAT_VERSION = 3
# Lucene/Anserini's BM25 parameters, the reference BEIR baselines use. bm25s defaults to 1.5/0.75,
# which scored 0.0103 nDCG@10 lower on the MS MARCO subset (long passages are over-penalised).
BM25_K1 = 0.9
BM25_B = 0.4
# Parameters per SQLite statement, below every SQLite's limit (999 before 3.32).
_VARS = 900

# A token is a run of word characters, possibly joined by - _ . / : (part numbers, SKUs, error
# codes, versions, file names). The joined form is indexed whole and also as its parts, so
# "AUR-7731-X" is found by "AUR-7731-X" (exactly, with a high IDF) and by "7731".
_TOKEN_RE = re.compile(r"\w+(?:[-_./:+#]\w+)*")
_SPLIT_RE = re.compile(r"[-_./:+#]")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
    row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL, file_hash TEXT NOT NULL,
    length INTEGER NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS postings(
    term TEXT NOT NULL, row INTEGER NOT NULL, tf INTEGER NOT NULL, PRIMARY KEY(term, row)
) WITHOUT ROWID;
"""


@lru_cache(maxsize=1)
def _stem_word() -> Callable[[str], str]:
    import Stemmer

    return Stemmer.Stemmer("english").stemWord


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    # bm25s's English list: the one our measured BM25 baselines were made with.

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # its import sets DEBUG
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


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


def _terms(text: str) -> Iterator[tuple[str, list[str]]]:
    stem, stopwords = _stem_word(), _stopwords()
    for match in _TOKEN_RE.finditer(text.lower()):
        token = match.group()
        parts = [p for p in _SPLIT_RE.split(token) if p]
        if len(parts) > 1:
            yield token, parts
        elif token not in stopwords:
            yield (token if any(c.isdigit() for c in token) else stem(token)), []


def keyword_file(persist_dir: Path, collection: str) -> Path:
    """Where the keyword index of a collection (one generation of an index) lives."""
    return persist_dir / f"keyword-{collection}.sqlite3"


class _Vocabulary:
    """``term in vocabulary``, answered by the postings table."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._known: dict[str, bool] = {}

    def __contains__(self, term: object) -> bool:
        if not isinstance(term, str):
            return False
        if term not in self._known:
            row = self._db.execute("SELECT 1 FROM postings WHERE term = ? LIMIT 1", (term,)).fetchone()
            self._known[term] = row is not None
        return self._known[term]


class KeywordIndex:
    """BM25 over one collection's chunks. ``path=None`` keeps it in memory (an index on a Chroma
    server, where each querying process follows the server's chunks itself)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread off: the server answers from a thread pool; SQLite serialises.
            self._db = sqlite3.connect(
                ":memory:" if path is None else str(path), timeout=30, check_same_thread=False
            )
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._open()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the keyword index {path}: {exc}") from None

    def _open(self) -> None:
        version = None
        try:
            found = self._db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
            version = int(found[0]) if found else None
        except sqlite3.OperationalError:  # a new file: no tables yet
            pass
        if version is not None and version != FORMAT_VERSION:
            # Derived data of another format: start afresh; the builder refills it from the store.
            with self._db:
                self._db.executescript(
                    "DROP TABLE IF EXISTS chunks; DROP TABLE IF EXISTS postings; DROP TABLE meta;"
                )
        with self._db:
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
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- writing (a build, under the writer lock) --------------------------------------------------

    def add(self, chunks: Sequence[Chunk] | Sequence[Hit]) -> None:
        """Index chunks (a chunk already present under its id is replaced)."""
        with self._db:
            self._delete_rows(self._rows_where("id", [c.id for c in chunks]))
            for chunk in chunks:
                terms = tokenize(chunk.text)
                meta = flat_metadata(chunk.metadata)
                cursor = self._db.execute(
                    "INSERT INTO chunks(id, doc_id, file_hash, length, text, metadata) VALUES (?,?,?,?,?,?)",
                    (
                        chunk.id,
                        str(meta.get(DOC_ID, "")),
                        str(meta.get(FILE_HASH, "")),
                        max(1, len(terms)),  # as bm25s counts an empty text: one empty token
                        chunk.text,
                        json.dumps(meta),
                    ),
                )
                row = cursor.lastrowid
                self._db.executemany(
                    "INSERT INTO postings VALUES (?,?,?)", [(t, row, n) for t, n in Counter(terms).items()]
                )

    def delete_documents(self, doc_ids: Sequence[str], *, keep_hash: str | None = None) -> None:
        """Remove the chunks of these documents; with ``keep_hash``, only other versions'."""
        with self._db:
            rows = self._rows_where("doc_id", doc_ids)
            if keep_hash is not None:
                rows = [r for r in rows if r[2] != keep_hash]
            self._delete_rows(rows)

    def delete_ids(self, ids: Sequence[str]) -> None:
        with self._db:
            self._delete_rows(self._rows_where("id", ids))

    def _rows_where(self, column: str, values: Sequence[str]) -> list[tuple[int, str, str]]:
        found: list[tuple[int, str, str]] = []
        for start in range(0, len(values), _VARS):
            part = list(values[start : start + _VARS])
            found += self._db.execute(
                f"SELECT row, text, file_hash FROM chunks WHERE {column} IN ({','.join('?' * len(part))})",
                part,
            ).fetchall()
        return found

    def _delete_rows(self, rows: Iterable[tuple[int, str, str]]) -> None:
        # A chunk's postings are found again from its text: tokenizing is cheaper than a second
        # index on postings(row), which would double the table.
        for row, text, _ in rows:
            self._db.executemany(
                "DELETE FROM postings WHERE term = ? AND row = ?", [(t, row) for t in set(tokenize(text))]
            )
            self._db.execute("DELETE FROM chunks WHERE row = ?", (row,))

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
        if stale:
            with self._db:
                for doc_id in stale:
                    keep = committed.hashes.get(doc_id)
                    rows = self._rows_where("doc_id", [doc_id])
                    self._delete_rows([r for r in rows if keep is None or r[2] != keep])
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
        visible: Callable[[Hit], bool] | None = None,
    ) -> list[Hit]:
        """Up to ``top_k`` chunks with a positive BM25 score, best first, among those ``visible``
        accepts (the committed ones that pass the filters)."""
        if top_k <= 0:
            return []
        counts = Counter(query_terms(query, _Vocabulary(self._db)))
        if not counts:
            return []
        n, total = self._db.execute("SELECT COUNT(*), TOTAL(length) FROM chunks").fetchone()
        if not n:
            return []
        weights = self._idf(counts, n)
        avgdl = total / n
        if not weights:
            return []
        values = ",".join("(?,?)" for _ in weights)
        params: list[Any] = [x for pair in weights.items() for x in pair]
        # Lucene's BM25: idf * tf / (tf + k1 * (1 - b + b * length / avgdl)), summed over terms.
        sql = (
            f"WITH q(term, w) AS (VALUES {values}) "
            "SELECT p.row, SUM(q.w * p.tf / (p.tf + ? * (1 - ? + ? * c.length / ?))) AS s "
            "FROM q JOIN postings p ON p.term = q.term JOIN chunks c ON c.row = p.row "
            "GROUP BY p.row ORDER BY s DESC, p.row LIMIT ?"
        )
        fetch = top_k
        while True:
            scored = self._db.execute(sql, [*params, BM25_K1, BM25_B, BM25_B, avgdl, fetch]).fetchall()
            hits = [h for h in self._hits(scored) if h.score > 0 and (visible is None or visible(h))]
            if len(hits) >= top_k or len(scored) < fetch:
                return hits[:top_k]
            fetch *= 4

    def _idf(self, counts: Counter[str], n: int) -> dict[str, float]:
        terms = list(counts)
        marks = ",".join("?" * len(terms))
        df = dict(
            self._db.execute(
                f"SELECT term, COUNT(*) FROM postings WHERE term IN ({marks}) GROUP BY term", terms
            ).fetchall()
        )
        # A term asked twice counts twice, as in bm25s.
        return {t: counts[t] * math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in terms if t in df}

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
            Hit(id=rows[row][0], text=rows[row][1], metadata=json.loads(rows[row][2]), score=float(score))
            for row, score in scored
            if row in rows
        ]
