"""How relevant a retrieved passage is, on a scale that reads the same for every question, and
whether the best of them is relevant enough to answer from (else: "not in your documents").

A ranking score cannot say that: hybrid's fused score is min-max normalised per question, so its
rank 1 reads 1.000 even when the best passage is a recipe for a salary question. Relevance is
instead, by retrieval mode:

- ``vector``: the raw cosine similarity of question and passage;
- ``bm25``: the passage's BM25 score over a scale set by the collection's statistics
  (``KeywordIndex.score_scale``: the geometric mean of the question's ceiling, the sum of its
  terms' IDF, and the IDF of a term no chunk holds), capped at 1;
- ``hybrid``: ``alpha * cosine + (1 - alpha) * that BM25 share`` (``retrieval.alpha``), a side
  that did not find the passage counting 0.

The thresholds below were chosen by measurement (``benchmarks/abstention.py`` over the sweep in
``configs/eval-abstention.yaml``; the README has the table): ``query.abstain_below`` and
``query.strong_from`` override them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from indexer.config.models import Config, RetrievalMode

if TYPE_CHECKING:
    from indexer.query.engine import Source

Label = Literal["strong", "weak", "none"]

# Per mode: (abstain below, strong from), measured by benchmarks/abstention.py on the sample
# questions (long and short), the MS MARCO subset and the Paul Graham set, each asked of its own
# corpus and of the others', with data/unanswerable_questions.jsonl. Abstain below: the highest
# threshold that still answers 95% of the answerable questions; it abstains on 94% of the
# unanswerable ones in hybrid mode, 74% in vector and 78% in bm25 mode. Strong from: the level 99%
# of the unanswerable questions stay below. Hybrid's are for retrieval.alpha 0.55, the default.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "vector": (0.30, 0.49),
    "bm25": (0.37, 0.62),
    "hybrid": (0.36, 0.46),
}


def source_relevance(
    scores: dict[str, float], mode: RetrievalMode, alpha: float, bm25_scale: float | None
) -> float:
    """One passage's relevance from its raw per-side ``scores`` (``Source.scores``)."""
    cosine = scores.get("vector", 0.0)
    share = 0.0
    if bm25_scale and "bm25" in scores:
        share = min(scores["bm25"] / bm25_scale, 1.0)
    if mode == "vector":
        return cosine
    if mode == "bm25":
        return share
    return alpha * cosine + (1.0 - alpha) * share


def thresholds(config: Config, mode: RetrievalMode) -> tuple[float, float]:
    """``(abstain below, strong from)`` for ``mode``: the config's, else the measured ones."""
    below, strong = THRESHOLDS[mode]
    query = config.query
    below = query.abstain_below if query.abstain_below is not None else below
    strong = query.strong_from if query.strong_from is not None else strong
    return below, max(strong, below)


def label(relevance: float, below: float, strong: float) -> Label:
    if relevance < below:
        return "none"
    return "strong" if relevance >= strong else "weak"


def annotate(
    sources: Sequence[Source], config: Config, mode: RetrievalMode, bm25_scale: float | None
) -> float | None:
    """Set each source's ``relevance`` and ``relevance_label``; the best relevance (None when
    nothing was retrieved)."""
    below, strong = thresholds(config, mode)
    best: float | None = None
    for source in sources:
        value = source_relevance(source.scores, mode, config.retrieval.alpha, bm25_scale)
        source.relevance = value
        source.relevance_label = label(value, below, strong)
        best = value if best is None else max(best, value)
    return best


def abstain_notice(best: float | None, config: Config, mode: RetrievalMode) -> str | None:
    """Why the answer abstains, or None when a passage is relevant enough to answer from."""
    if not config.query.abstain:
        return None
    below, _ = thresholds(config, mode)
    if best is None:
        return "not in your documents: no passage matches the question"
    if best >= below:
        return None
    return (
        f"not in your documents: no passage is relevant enough to answer from (best relevance "
        f"{best:.2f}, below query.abstain_below {below:.2f} for {mode} retrieval); the nearest "
        "passages are listed"
    )
