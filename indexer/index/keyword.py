"""The keyword (BM25) index over the chunks stored in Chroma, persisted beside them.

It is derived data: every build rebuilds it from the chunks in Chroma when the manifest changed,
and it records the manifest state it reflects, so a stale copy (a build killed between Chroma and
here, an older version of the tool) is noticed instead of being searched silently.

We drive ``bm25s`` directly rather than through ``llama-index-retrievers-bm25``: that wrapper
tokenizes with bm25s' default pattern (words of two or more letters, stemmed), which splits
``AUR-7731-X`` into ``aur``/``7731`` and drops ``E`` from ``E-214``, so identifiers, the very thing
keyword search is here for, stop being findable as such.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.errors import StoreError
from indexer.index.manifest import Manifest
from indexer.index.store import DOC_ID, FILE_HASH, Hit

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

# 2: BM25 with k1 0.9, b 0.4 (bm25s bakes both into the saved index, so older ones are rebuilt).
FORMAT_VERSION = 2
# Lucene/Anserini's BM25 parameters, the reference BEIR baselines use. bm25s defaults to 1.5/0.75,
# which scored 0.0103 nDCG@10 lower on the MS MARCO subset (long passages are over-penalised).
BM25_K1 = 0.9
BM25_B = 0.4
_STATE_FILE = "state.json"
_CHUNKS_FILE = "chunks.jsonl"

# A token is a run of word characters, possibly joined by - _ . / : (part numbers, SKUs, error
# codes, versions, file names). The joined form is indexed whole and also as its parts, so
# "AUR-7731-X" is found by "AUR-7731-X" (exactly, with a high IDF) and by "7731".
_TOKEN_RE = re.compile(r"\w+(?:[-_./:+#]\w+)*")
_SPLIT_RE = re.compile(r"[-_./:+#]")


@lru_cache(maxsize=1)
def _stem_word() -> Callable[[str], str]:
    import Stemmer

    return Stemmer.Stemmer("english").stemWord


@lru_cache(maxsize=1)
def _bm25s() -> Any:
    """bm25s, imported on first use. Its import sets its own logger to DEBUG, which made every
    build print "Building index from tokens": put it back to warnings."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    _bm25s()
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


def query_terms(text: str, vocabulary: Mapping[str, Any]) -> list[str]:
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


def manifest_state(manifest: Manifest) -> str:
    """What the chunks in the index are, as one digest: the files with their hashes and chunk
    counts, and the settings that cut them. Timestamps are left out so a no-op build keeps it."""
    payload = {
        "files": {k: [r.hash, r.chunks] for k, r in sorted(manifest.files.items())},
        "chunking": manifest.chunking,
        "embedding": manifest.embedding.get("fingerprint"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class KeywordIndex:
    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    state: str
    _bm25: Any = None

    @classmethod
    def build(cls, hits: Iterable[Hit], state: str) -> KeywordIndex:
        bm25s = _bm25s()
        items = list(hits)
        index = cls(
            ids=[h.id for h in items],
            texts=[h.text for h in items],
            metadatas=[h.metadata for h in items],
            state=state,
        )
        if items:
            index._bm25 = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
            index._bm25.index([tokenize(t) or [""] for t in index.texts], show_progress=False)
        return index

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: str, top_k: int, mask: np.ndarray | None = None) -> list[Hit]:
        """Up to ``top_k`` chunks with a positive BM25 score, best first; ``mask`` (one 0/1 per
        chunk) restricts the search to the chunks a filter allows."""
        if self._bm25 is None or top_k <= 0:
            return []
        terms = query_terms(query, self._bm25.vocab_dict)
        if not terms:
            return []
        k = min(top_k, len(self.ids))
        docs, scores = self._bm25.retrieve([terms], k=k, show_progress=False, n_threads=1, weight_mask=mask)
        hits = []
        for position, score in zip(docs[0], scores[0], strict=True):
            if score <= 0:
                continue
            i = int(position)
            hits.append(
                Hit(id=self.ids[i], text=self.texts[i], metadata=self.metadatas[i], score=float(score))
            )
        return hits

    def save(self, folder: Path) -> None:
        """Write the index to ``folder`` atomically: into a sibling temp folder, then swapped in,
        with the state written last, so a crash leaves either the old index or none."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
        try:
            if self._bm25 is not None:
                self._bm25.save(str(tmp), show_progress=False)
            with open(tmp / _CHUNKS_FILE, "w", encoding="utf-8") as fh:
                for i, text, meta in zip(self.ids, self.texts, self.metadatas, strict=True):
                    fh.write(json.dumps({"id": i, "text": text, "metadata": meta}) + "\n")
            state = {"format_version": FORMAT_VERSION, "manifest_state": self.state, "chunks": len(self)}
            (tmp / _STATE_FILE).write_text(json.dumps(state))
            old = folder.with_name(f".{folder.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            if folder.exists():
                os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @staticmethod
    def saved_state(folder: Path) -> str | None:
        """The manifest state the saved index reflects, read without loading the index."""
        try:
            state = json.loads((folder / _STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return state.get("manifest_state") if isinstance(state, dict) else None

    @classmethod
    def load(cls, folder: Path) -> KeywordIndex | None:
        """The saved index, or ``None`` when there is none (or it is unreadable or of another
        format: it is derived data, so the caller rebuilds it)."""
        if not (folder / _STATE_FILE).is_file():
            return None
        try:
            state = json.loads((folder / _STATE_FILE).read_text())
            if state.get("format_version") != FORMAT_VERSION:
                return None
            ids, texts, metas = [], [], []
            with open(folder / _CHUNKS_FILE, encoding="utf-8") as fh:
                for line in fh:
                    row = json.loads(line)
                    ids.append(row["id"])
                    texts.append(row["text"])
                    metas.append(row["metadata"])
            index = cls(ids=ids, texts=texts, metadatas=metas, state=state["manifest_state"])
            if ids:
                index._bm25 = _bm25s().BM25.load(str(folder), show_progress=False)
            return index
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring the unreadable keyword index at %s (%s); it will be rebuilt", folder, exc)
            return None


def keyword_folder(persist_dir: Path, collection: str) -> Path:
    return persist_dir / f"keyword-{collection}"


def indexed_chunks(chunks: Iterable[Hit], manifest: Manifest) -> Iterable[Hit]:
    """The chunks the manifest vouches for: those of files at their recorded version (a build
    stopped mid-way can leave another version's chunks in Chroma until the next build)."""
    for hit in chunks:
        record = manifest.files.get(str(hit.metadata.get(DOC_ID, "")))
        if record is not None and hit.metadata.get(FILE_HASH) == record.hash:
            yield hit


def build_from_store(read_chunks: Callable[[], Iterable[Hit]], manifest: Manifest) -> KeywordIndex:
    try:
        return KeywordIndex.build(indexed_chunks(read_chunks(), manifest), manifest_state(manifest))
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(
            f"cannot read the chunks to build the keyword index: {type(exc).__name__}: {exc}"
        ) from None
