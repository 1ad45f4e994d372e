"""Retrieval: the passages a question is answered from.

Dense search goes through ``ChunkStore.search`` (Chroma), keyword search through the BM25 index
(``index/keyword.py``); both show only what the manifest commits now;
``hybrid`` fuses the two (``indexer.query.fusion``: a convex combination of normalised scores, or
reciprocal rank). Then: a similarity cutoff on the dense side, de-duplication, an optional
cross-encoder, ``query.postprocessors`` (``indexer.query.postprocess``), and exactly ``top_k``
results when the index holds that many eligible passages (and the postprocessors drop none).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, get_args

from indexer.components import Components
from indexer.config.models import Config, RetrievalMode
from indexer.index.index import Index
from indexer.index.manifest import Manifest
from indexer.index.store import DOC_ID, ChunkStore, Hit
from indexer.query import fusion
from indexer.query.filters import Filters
from indexer.query.fusion import Ranked
from indexer.query.postprocess import Postprocessors

log = logging.getLogger(__name__)

_SPACE_RE = re.compile(r"\s+")

RETRIEVAL_MODES: tuple[RetrievalMode, ...] = get_args(RetrievalMode)


@dataclass
class Retrieved:
    passages: list[Ranked]
    notices: list[str] = field(default_factory=list)
    # What this question's BM25 scores are divided by for relevance (KeywordIndex.score_scale).
    bm25_scale: float | None = None


class Retriever:
    """Passages for questions over ``index``, by the retrieval settings of ``components.config``."""

    def __init__(self, components: Components, index: Index) -> None:
        self.components = components
        self.index = index
        self._reranker: Any = None
        config = components.config
        self._postprocessors = Postprocessors(config.query.postprocessors, config.source)

    @property
    def config(self) -> Config:
        return self.components.config

    def retrieve(
        self,
        question: str,
        top_k: int,
        filters: Filters,
        manifest: Manifest,
        store: ChunkStore,
        mode: RetrievalMode | None = None,
    ) -> Retrieved:
        """``mode`` overrides ``retrieval.mode`` for this question only."""
        cfg = self.config.retrieval
        mode = mode or cfg.mode
        notices: list[str] = []
        where = None
        if filters:
            allowed = filters.allowed_files(manifest.files)
            if not allowed:
                return Retrieved([], [f"no indexed file matches the filters ({filters.describe()})"])
            where = filters.chroma_where(manifest.files)
        keyword = None
        if mode in ("bm25", "hybrid"):
            keyword, notice = self.index.keyword_index(store)
            if notice:
                notices.append(notice)
        committed = self.index.committed()
        vector = None
        if mode in ("vector", "hybrid"):
            vector = self.components.query_embedder.embed_query(question)

        want = max(top_k, cfg.rerank.candidates) if cfg.rerank else top_k
        fetch = want * 2 + 8
        if mode == "hybrid" and cfg.fusion == "convex":
            fetch = max(fetch, cfg.fusion_depth)
        while True:
            dense: list[Hit] = []
            dense_done = True
            if vector is not None:
                dense = store.search(vector, fetch, where)
                dense_done = len(dense) < fetch
                if cfg.similarity_cutoff is not None:
                    above = [h for h in dense if h.score >= cfg.similarity_cutoff]
                    dense_done = dense_done or len(above) < len(dense)
                    dense = above
            sparse: list[Hit] = []
            if keyword is not None:
                # Like the vector store, the keyword index may hold versions not committed yet.
                sparse = keyword.search(question, fetch, committed=committed, where=filters or None)
            sparse_done = len(sparse) < fetch
            kept = self._select(self._fuse(dense, sparse, mode), want)
            # Each side is done when it returned fewer hits than asked for: the index ran out.
            if len(kept) >= want or (dense_done and sparse_done):
                break
            fetch *= 4

        if cfg.rerank and kept:
            kept = self._rerank(question, kept)
        if self._postprocessors and kept:
            kept = self._postprocessors.apply(question, kept)
        scale = keyword.score_scale(question) if keyword is not None else None
        return Retrieved(kept[:top_k], notices, scale)

    def _fuse(self, dense: list[Hit], sparse: list[Hit], mode: RetrievalMode) -> list[Ranked]:
        cfg = self.config.retrieval
        if mode == "vector":
            return [Ranked(h, h.score, {"vector": h.score}) for h in dense]
        if mode == "bm25":
            return [Ranked(h, h.score, {"bm25": h.score}) for h in sparse]
        if cfg.fusion == "convex":
            return fusion.convex(dense, sparse, cfg.alpha, cfg.normalization, cfg.fusion_depth)
        return fusion.rrf(dense, sparse, cfg.vector_weight, cfg.bm25_weight, cfg.rrf_k)

    def _select(self, ranked: list[Ranked], want: int) -> list[Ranked]:
        """The best ``want`` passages, skipping repeats of a better one: the same text (a copied
        file), or a chunk that mostly overlaps a kept chunk of the same page of the same file."""
        cfg = self.config.retrieval
        kept: list[Ranked] = []
        texts: list[str] = []
        per_doc: dict[str, int] = {}
        for candidate in ranked:
            if len(kept) >= want:
                break
            meta = candidate.hit.metadata
            doc = str(meta.get(DOC_ID, ""))
            if cfg.max_per_document is not None and per_doc.get(doc, 0) >= cfg.max_per_document:
                continue
            if cfg.dedupe:
                text = _SPACE_RE.sub(" ", candidate.hit.text).strip().lower()
                if any(text in t or t in text for t in texts if text and t):
                    continue
                if any(_overlaps(meta, k.hit.metadata) for k in kept):
                    continue
                texts.append(text)
            kept.append(candidate)
            per_doc[doc] = per_doc.get(doc, 0) + 1
        return kept

    def _rerank(self, question: str, kept: list[Ranked]) -> list[Ranked]:
        if self._reranker is None:
            from indexer.components.reranker import load_reranker

            assert self.config.retrieval.rerank is not None
            self._reranker = load_reranker(self.config.retrieval.rerank)
        scores = self._reranker.predict(
            [(question, r.hit.text) for r in kept], show_progress_bar=False, convert_to_numpy=True
        )
        for r, s in zip(kept, scores, strict=True):
            r.scores["rerank"] = float(s)
            r.score = float(s)
        return sorted(kept, key=lambda r: r.score, reverse=True)


def _overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two chunks of one file (and page) whose character ranges share over half the shorter."""
    if a.get(DOC_ID) != b.get(DOC_ID) or a.get("page") != b.get("page"):
        return False
    try:
        a0, a1, b0, b1 = (int(x) for x in (a["start_char"], a["end_char"], b["start_char"], b["end_char"]))
    except (KeyError, TypeError, ValueError):
        return False
    shared = min(a1, b1) - max(a0, b0)
    shorter = min(a1 - a0, b1 - b0)
    return shorter > 0 and shared > shorter / 2
