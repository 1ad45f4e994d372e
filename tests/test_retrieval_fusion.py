"""Hybrid fusion functions (convex combination of normalised scores, reciprocal rank) on ranked
lists, and their settings. The end-to-end hybrid retrieval is in test_retrieval.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from indexer.config.models import RetrievalConfig
from indexer.index.store import Hit
from indexer.query.fusion import convex, normalizer, rrf


def _hits(*scored: tuple[str, float]) -> list[Hit]:
    return [Hit(id=i, text=i, score=s) for i, s in scored]


DENSE = _hits(("a", 0.82), ("b", 0.80), ("c", 0.61), ("d", 0.40))
SPARSE = _hits(("c", 14.0), ("e", 6.0), ("a", 5.5))


def _ids(ranked: list) -> list[str]:
    return [r.hit.id for r in ranked]


@pytest.mark.parametrize("normalization", ["minmax", "zscore", "theoretical"])
def test_alpha_moves_the_fusion_from_one_side_to_the_other(normalization: str) -> None:
    assert _ids(convex(DENSE, SPARSE, 1.0, normalization, 50))[:4] == ["a", "b", "c", "d"]
    assert _ids(convex(DENSE, SPARSE, 0.0, normalization, 50))[:3] == ["c", "e", "a"]


def test_a_passage_far_ahead_on_one_side_keeps_its_lead() -> None:
    # "c" is the dense side's third but BM25's clear first: RRF levels it to its ranks and puts
    # "a" (first and third) ahead; the convex combination keeps BM25's margin.
    assert _ids(rrf(DENSE, SPARSE, 1.0, 1.0, 60))[0] == "a"
    assert _ids(convex(DENSE, SPARSE, 0.5, "minmax", 50))[0] == "c"
    fused = convex(DENSE, SPARSE, 0.5, "minmax", 50)[0]
    assert fused.scores == {"vector": 0.61, "bm25": 14.0}


def test_the_only_keyword_match_beats_passages_bm25_does_not_match() -> None:
    # An exact identifier: BM25 matches one passage (the rest score 0), dense search prefers a
    # look-alike. One hit must not normalise to the floor the unmatched passages get.
    # (z-scores can let a dense outlier win here: one BM25 score has no spread to measure.)
    others = ((f"other{i}", 0.5 - i * 0.004) for i in range(60))
    dense = _hits(("lookalike", 0.70), ("exact", 0.55), *others)
    sparse = _hits(("exact", 9.3))
    for normalization in ("minmax", "theoretical"):
        assert _ids(convex(dense, sparse, 0.5, normalization, 50))[0] == "exact"


@pytest.mark.parametrize("normalization", ["minmax", "zscore", "theoretical"])
def test_fetching_deeper_does_not_change_the_top(normalization: str) -> None:
    # An evaluation fetches 400 hits per side, a question 50: the top must not depend on it.
    dense = _hits(*((f"d{i}", 0.9 - i * 0.002) for i in range(400)))
    sparse = _hits(*((f"d{(i * 7) % 400}", 30.0 - i * 0.05) for i in range(400)))
    shallow = convex(dense[:50], sparse[:50], 0.5, normalization, 50)
    deep = convex(dense, sparse, 0.5, normalization, 50)
    assert _ids(deep)[:10] == _ids(shallow)[:10]
    assert [round(r.score, 9) for r in deep[:10]] == [round(r.score, 9) for r in shallow[:10]]


def test_normalisations_map_scores_as_documented() -> None:
    norm, floor = normalizer("vector", [0.8, 0.2], "theoretical", exhausted=False)
    assert (norm(1.0), norm(-1.0), norm(0.2), floor) == (1.0, 0.0, 0.6, 0.6)
    norm, floor = normalizer("bm25", [12.0, 3.0], "theoretical", exhausted=True)
    assert (norm(12.0), norm(3.0), floor) == (1.0, 0.25, 0.0)
    norm, floor = normalizer("bm25", [12.0, 3.0], "minmax", exhausted=False)
    assert (norm(12.0), norm(3.0), floor) == (1.0, 0.0, 0.0)
    norm, floor = normalizer("bm25", [12.0, 4.0], "zscore", exhausted=False)
    assert (norm(12.0), norm(4.0), floor) == (1.0, -1.0, -1.0)


def test_an_empty_side_leaves_the_other_ranking_as_it_is() -> None:
    assert _ids(convex(DENSE, [], 0.5, "minmax", 50)) == ["a", "b", "c", "d"]
    assert _ids(convex([], SPARSE, 0.5, "zscore", 50)) == ["c", "e", "a"]


def test_fusion_settings_are_checked() -> None:
    assert RetrievalConfig(fusion="rrf", vector_weight=0, bm25_weight=1).fusion == "rrf"
    with pytest.raises(ValidationError, match="fusion"):
        RetrievalConfig(fusion="linear")
    with pytest.raises(ValidationError, match="alpha"):
        RetrievalConfig(alpha=1.5)
    with pytest.raises(ValidationError, match="normalization"):
        RetrievalConfig(normalization="l2")
    with pytest.raises(ValidationError, match="needs vector_weight or bm25_weight"):
        RetrievalConfig(fusion="rrf", vector_weight=0, bm25_weight=0)
    # Convex fusion ignores the RRF weights, so both at 0 is no contradiction there.
    assert RetrievalConfig(vector_weight=0, bm25_weight=0).fusion == "convex"
