"""Retrieval and answer metrics as pure functions, computed the way trec_eval / BEIR / MTEB and the
official SQuAD script compute them, so numbers are comparable with published ones.

Retrieval metrics take a ranked list of document ids and ``qrels`` (document id -> graded
relevance). A document is relevant when its grade is at least 1 (trec_eval's default
``relevance_level``); nDCG uses the grades themselves.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

RETRIEVAL_METRICS = ("hit", "mrr", "ndcg", "recall", "precision")
ANSWER_METRICS = ("exact_match", "f1", "semantic_similarity")
# Shares read off each checked answer (``Answer.abstained``, its sentences and citations): what the
# system did with the model's text, not how close the text is to a reference (see check_scores).
CHECK_METRICS = ("abstained", "flagged", "cited", "model_cited", "unflagged_number", "answered_correct")
JUDGE_METRICS = ("faithfulness", "relevancy")

DEFAULT_RETRIEVAL = ("hit@1", "hit@10", "mrr@10", "ndcg@10", "recall@10", "recall@100", "precision@10")
DEFAULT_ANSWER = ("exact_match", "f1", "semantic_similarity", *CHECK_METRICS)

_METRIC_RE = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)(?:@(?P<k>\d+))?$")


def parse_metric(text: str) -> tuple[str, int | None]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; ``"f1"`` -> ``("f1", None)``. ``ValueError`` if unknown."""
    match = _METRIC_RE.match(text.strip().lower())
    if match:
        name, k = match.group("name"), match.group("k")
        if name in RETRIEVAL_METRICS and k is not None and int(k) > 0:
            return name, int(k)
        if name in (*ANSWER_METRICS, *CHECK_METRICS, *JUDGE_METRICS) and k is None:
            return name, None
    known = ", ".join(
        [f"{m}@K" for m in RETRIEVAL_METRICS] + list(ANSWER_METRICS + CHECK_METRICS + JUDGE_METRICS)
    )
    raise ValueError(f"unknown metric {text!r}; known: {known}")


def rank_documents(scores: Mapping[str, float]) -> list[str]:
    """Document ids best first. Ties are broken as trec_eval does (and so BEIR and MTEB, through
    pytrec_eval): by document id in descending order, so equal scores always rank the same way."""
    return [doc for doc, _ in sorted(scores.items(), key=lambda item: (-item[1], _Desc(item[0])))]


class _Desc:
    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __lt__(self, other: _Desc) -> bool:
        return self.value > other.value


def max_score_per_document(hits: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Chunk hits ``(document id, score)`` -> each document's best chunk score."""
    best: dict[str, float] = {}
    for doc, score in hits:
        if doc not in best or score > best[doc]:
            best[doc] = score
    return best


def _relevant(qrels: Mapping[str, int]) -> set[str]:
    return {doc for doc, grade in qrels.items() if grade >= 1}


def hit_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    relevant = _relevant(qrels)
    return 1.0 if any(doc in relevant for doc in ranked[:k]) else 0.0


def mrr_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    relevant = _relevant(qrels)
    for rank, doc in enumerate(ranked[:k], start=1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


def recall_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    relevant = _relevant(qrels)
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def precision_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Divided by k even when fewer than k documents were retrieved (trec_eval's P_k)."""
    relevant = _relevant(qrels)
    return sum(1 for doc in ranked[:k] if doc in relevant) / k


def ndcg_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Linear gain, log2(rank + 1) discount; the ideal ranking is built from every judged document
    (not only the retrieved ones), as trec_eval's ndcg_cut computes it."""
    dcg = sum(max(qrels.get(doc, 0), 0) / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], 1))
    ideal_grades = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(grade / math.log2(rank + 1) for rank, grade in enumerate(ideal_grades, 1))
    return dcg / idcg if idcg > 0 else 0.0


_RETRIEVAL_FUNCS = {
    "hit": hit_at_k,
    "mrr": mrr_at_k,
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
}


def retrieval_scores(
    ranked: Sequence[str], qrels: Mapping[str, int], metrics: Sequence[str]
) -> dict[str, float]:
    """Every requested retrieval metric for one query. Duplicate ids count once, at their best
    rank; a query that retrieved nothing scores 0 on all of them."""
    unique = list(dict.fromkeys(ranked))
    scores = {}
    for metric in metrics:
        name, k = parse_metric(metric)
        if name in _RETRIEVAL_FUNCS and k is not None:
            scores[metric] = _RETRIEVAL_FUNCS[name](unique, qrels, k)
    return scores


# --- answers (SQuAD v1.1 official evaluation script) -------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


_DIGITS_RE = re.compile(r"\d+")
# The [n] markers the model or the system put in a sentence: not numbers the sentence states.
_CITATION_RE = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
# The quote marks an extracted answer is shown in (query.answer_style: extract).
_QUOTE_MARKS = str.maketrans("", "", "“”")


def answer_text(answer: str) -> str:
    """An answer as EM, F1 and semantic similarity score it: without the ``[n]`` citations and the
    quote marks around an extract, which are how the answer is shown, not what it says (SQuAD's
    normalisation strips ASCII punctuation only, so "“868 MHz” [1]" would miss "868 MHz")."""
    return " ".join(_CITATION_RE.sub(" ", answer).translate(_QUOTE_MARKS).split())


def normalize_answer(text: str) -> str:
    """Lowercase, strip punctuation and the articles a/an/the, collapse whitespace (SQuAD)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1 if the normalised prediction equals any normalised reference (max over references)."""
    if not references:
        return 0.0
    normalized = normalize_answer(prediction)
    return max(1.0 if normalized == normalize_answer(ref) else 0.0 for ref in references)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """Token-level F1 of the normalised texts, max over references."""
    if not references:
        return 0.0
    return max(_f1(prediction, ref) for ref in references)


def _f1(prediction: str, reference: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    common = Counter(pred_tokens) & Counter(ref_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def contains_answer(prediction: str, references: Sequence[str]) -> bool:
    """Whether a normalised reference occurs in the normalised prediction as whole words (the
    "has answer" test of open-domain QA): a right answer in a longer sentence counts, "15" in
    "150" does not."""
    padded = f" {normalize_answer(prediction)} "
    return any(f" {ref} " in padded for ref in map(normalize_answer, references) if ref)


def check_scores(
    *,
    abstained: bool,
    sentences: Sequence[Mapping[str, Any]],
    citations: Sequence[int],
    answer: str,
    source_texts: Sequence[str],
    references: Sequence[str],
) -> dict[str, float]:
    """The CHECK_METRICS of one answer, from what the query engine reported about it (its
    ``abstained`` flag, its sentences as ``Sentence.to_dict`` gives them, ``Answer.citations``):
    eval reads the attribution, it does not redo it.

    ``abstained`` is scored for every answer; ``answered_correct`` (not abstained, and a reference
    in the text) where there are references; the others only for answers given (an abstention
    has no sentences to flag or cite), so their means are shares of the answers given.
    ``unflagged_number`` audits the flags with a cruder test of its own: a sentence marked
    supported that holds a run of digits found in no source's text (it over-counts "6" for
    "six", and does not ask which passage holds the digits)."""
    scores = {"abstained": 1.0 if abstained else 0.0}
    if references:
        correct = not abstained and contains_answer(answer_text(answer), references)
        scores["answered_correct"] = 1.0 if correct else 0.0
    if abstained or not answer.strip():
        return scores
    source_digits = {d for text in source_texts for d in _DIGITS_RE.findall(text)}
    scores["flagged"] = 1.0 if any(not s.get("supported", True) for s in sentences) else 0.0
    scores["cited"] = 1.0 if citations else 0.0
    scores["model_cited"] = 1.0 if any(s.get("cited_by") == "model" for s in sentences) else 0.0
    unflagged = any(
        s.get("supported", True)
        and set(_DIGITS_RE.findall(_CITATION_RE.sub("", str(s.get("text", ""))))) - source_digits
        for s in sentences
    )
    scores["unflagged_number"] = 1.0 if unflagged else 0.0
    return scores


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm > 0 else 0.0


# --- aggregation ---------------------------------------------------------------------------------


def rounded(value: float | None) -> float | None:
    """A number as a run records it: six decimals keep every metric's precision and make saved
    runs compare equal across platforms whose last float bits differ."""
    return None if value is None else round(float(value), 6)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
