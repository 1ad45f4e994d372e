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
from collections.abc import Callable, Iterable
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

FORMAT_VERSION = 1
_STATE_FILE = "state.json"
_CHUNKS_FILE = "chunks.jsonl"

# A token is a run of word characters, possibly joined by - _ . / : (part numbers, SKUs, error
# codes, versions, file names). The joined form is indexed whole and also as its parts, so
# "AUR-7731-X" is found by "AUR-7731-X" (exactly, with a high IDF) and by "7731".
_TOKEN_RE = re.compile(r"\w+(?:[-_./:+#]\w+)*")
_SPLIT_RE = re.compile(r"[-_./:+#]")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "does",
        "do",
        "did",
        "can",
        "should",
        "would",
        "could",
        "you",
        "your",
        "we",
        "our",
    ]
)


@lru_cache(maxsize=1)
def _stem_word() -> Callable[[str], str]:
    import Stemmer

    return Stemmer.Stemmer("english").stemWord


def tokenize(text: str) -> list[str]:
    """Lower-cased terms for BM25: words stemmed (Snowball) without stop words; identifiers
    (anything with a digit or a joiner) whole and unstemmed, plus their parts."""
    stem = _stem_word()
    terms: list[str] = []
    for match in _TOKEN_RE.finditer(text.lower()):
        token = match.group()
        parts = [p for p in _SPLIT_RE.split(token) if p]
        if len(parts) > 1:
            terms.append(token)
            terms.extend(parts)
        elif token not in _STOPWORDS:
            terms.append(token if any(c.isdigit() for c in token) else stem(token))
    return terms


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
        import bm25s

        items = list(hits)
        index = cls(
            ids=[h.id for h in items],
            texts=[h.text for h in items],
            metadatas=[h.metadata for h in items],
            state=state,
        )
        if items:
            index._bm25 = bm25s.BM25()
            index._bm25.index([tokenize(t) or [""] for t in index.texts], show_progress=False)
        return index

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, query: str, top_k: int, mask: np.ndarray | None = None) -> list[Hit]:
        """Up to ``top_k`` chunks with a positive BM25 score, best first; ``mask`` (one 0/1 per
        chunk) restricts the search to the chunks a filter allows."""
        if self._bm25 is None or top_k <= 0:
            return []
        vocab = self._bm25.vocab_dict
        terms = [t for t in tokenize(query) if t in vocab]
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
                import bm25s

                index._bm25 = bm25s.BM25.load(str(folder), show_progress=False)
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
