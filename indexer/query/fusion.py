"""Fusing a dense and a keyword ranking into one (``retrieval.mode: hybrid``).

Two fusion functions (Bruch et al., 2023, "An Analysis of Fusion Functions for Hybrid Retrieval"):

- ``rrf``: weighted reciprocal rank, ``w / (rrf_k + rank)``. Scores are ignored, only ranks count.
- ``convex``: ``alpha * dense + (1 - alpha) * bm25`` over normalised scores, so a passage far
  ahead on one side keeps that lead instead of being levelled to its rank.

Normalisations (``retrieval.normalization``), each per question and per side:

- ``minmax``: ``(s - min) / (max - min)``;
- ``zscore``: ``(s - mean) / std``;
- ``theoretical``: cosine by its bounds ``[-1, 1]``, BM25 by its maximum for the question.

Only the first ``depth`` hits of each side count: their statistics set the normalisation, and any
other passage gets the side's floor, the most a passage outside its top ``depth`` can score there
(the ``depth``-th score; BM25's 0 when it matched fewer passages). So a caller that fetches deeper
(an evaluation asking for 100 documents) ranks the top exactly as a question asking for 3 does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from indexer.index.store import Hit

Fusion = Literal["rrf", "convex"]
Normalization = Literal["minmax", "zscore", "theoretical"]
Side = Literal["vector", "bm25"]


@dataclass
class Ranked:
    hit: Hit
    score: float
    scores: dict[str, float] = field(default_factory=dict)


def rrf(
    dense: Sequence[Hit], sparse: Sequence[Hit], vector_weight: float, bm25_weight: float, k: int
) -> list[Ranked]:
    fused: dict[str, Ranked] = {}
    for name, hits, weight in (("vector", dense, vector_weight), ("bm25", sparse, bm25_weight)):
        for rank, hit in enumerate(hits, start=1):
            entry = fused.setdefault(hit.id, Ranked(hit, 0.0))
            entry.score += weight / (k + rank)
            entry.scores[name] = hit.score
    return _sorted(fused)


def convex(
    dense: Sequence[Hit], sparse: Sequence[Hit], alpha: float, normalization: Normalization, depth: int
) -> list[Ranked]:
    """``alpha`` is the dense side's weight, ``1 - alpha`` the keyword side's."""
    fused: dict[str, Ranked] = {}
    sides: list[tuple[str, float, dict[str, float], float]] = []
    rankings: tuple[tuple[Side, Sequence[Hit], float], ...] = (
        ("vector", dense, alpha),
        ("bm25", sparse, 1.0 - alpha),
    )
    for name, hits, weight in rankings:
        if not hits:
            continue
        top = hits[:depth]
        norm, floor = normalizer(name, [h.score for h in top], normalization, exhausted=len(hits) < depth)
        sides.append((name, weight, {h.id: norm(h.score) for h in top}, floor))
        for hit in hits:
            fused.setdefault(hit.id, Ranked(hit, 0.0)).scores[name] = hit.score
    for entry in fused.values():
        for _name, weight, values, floor in sides:
            entry.score += weight * values.get(entry.hit.id, floor)
    return _sorted(fused)


def normalizer(
    side: Side, scores: Sequence[float], normalization: Normalization, exhausted: bool
) -> tuple[Callable[[float], float], float]:
    """The map from one side's raw scores (its top hits, best first) to comparable ones, and the
    normalised floor: what a passage outside them gets. ``exhausted``: the side returned every
    passage it could (BM25: every one sharing a term with the question; the others score 0)."""
    low = 0.0 if exhausted and side == "bm25" else min(scores)
    norm: Callable[[float], float]
    if normalization == "theoretical":
        if side == "vector":
            norm = lambda s: (s + 1.0) / 2.0  # noqa: E731
        else:
            top = max(scores)
            norm = (lambda s: s / top) if top > 0 else (lambda s: 0.0)
    elif normalization == "zscore":
        mean = sum(scores) / len(scores)
        std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
        # One hit, or all tied: the scores say nothing about each other; it still beats the floor.
        norm = (lambda s: (s - mean) / std) if std > 0 else (lambda s: 1.0 if s > low else 0.0)
    else:
        high = max(scores)
        if high <= low:  # one hit, or all tied: each still beats the floor
            return (lambda s: 1.0), 0.0
        norm = lambda s: (s - low) / (high - low)  # noqa: E731
    return norm, norm(low)


def _sorted(fused: dict[str, Ranked]) -> list[Ranked]:
    # Ties (equal fused scores) keep the order passages were first seen: dense first.
    return sorted(fused.values(), key=lambda r: r.score, reverse=True)
