"""The metric functions against hand-computed cases: graded relevance, ties, empty retrieval, and
the SQuAD normalisation."""

from __future__ import annotations

import math

import pytest

from indexer.eval import metrics as m

# Judged documents: a is highly relevant (3), b relevant (2), c marginal (1), d judged not relevant.
QRELS = {"a": 3, "b": 2, "c": 1, "d": 0}
RANKED = ["x", "b", "a", "d"]
L3 = math.log2(3)


def test_hit_and_mrr_find_the_first_relevant_document() -> None:
    assert m.hit_at_k(RANKED, QRELS, 1) == 0.0
    assert m.hit_at_k(RANKED, QRELS, 2) == 1.0
    assert m.mrr_at_k(RANKED, QRELS, 10) == 0.5
    assert m.mrr_at_k(RANKED, QRELS, 1) == 0.0


def test_ndcg_uses_graded_gain_log2_discount_and_the_ideal_from_all_judged_documents() -> None:
    dcg = 0 / 1 + 2 / L3 + 3 / 2 + 0 / math.log2(5)
    ideal = 3 / 1 + 2 / L3 + 1 / 2  # c is judged but never retrieved: it still counts in the ideal
    assert m.ndcg_at_k(RANKED, QRELS, 4) == pytest.approx(dcg / ideal)
    assert m.ndcg_at_k(RANKED, QRELS, 4) == pytest.approx(0.579996, abs=1e-6)
    assert m.ndcg_at_k(RANKED, QRELS, 2) == pytest.approx((2 / L3) / (3 + 2 / L3))
    assert m.ndcg_at_k(["a", "b", "c"], QRELS, 3) == pytest.approx(1.0)
    # Swapping two documents of different grades lowers the score.
    assert m.ndcg_at_k(["b", "a", "c"], QRELS, 3) < 1.0


def test_recall_and_precision_count_grades_of_one_or_more_as_relevant() -> None:
    assert m.recall_at_k(RANKED, QRELS, 2) == pytest.approx(1 / 3)
    assert m.recall_at_k(RANKED, QRELS, 4) == pytest.approx(2 / 3)
    assert m.precision_at_k(RANKED, QRELS, 4) == 0.5
    # trec_eval's P_k divides by k even when fewer documents came back.
    assert m.precision_at_k(RANKED, QRELS, 10) == pytest.approx(0.2)


def test_a_judged_query_that_retrieves_nothing_scores_zero_everywhere() -> None:
    scores = m.retrieval_scores([], QRELS, ["hit@1", "mrr@10", "ndcg@10", "recall@100", "precision@5"])
    assert scores == {"hit@1": 0.0, "mrr@10": 0.0, "ndcg@10": 0.0, "recall@100": 0.0, "precision@5": 0.0}


def test_duplicates_count_once_at_their_best_rank() -> None:
    scores = m.retrieval_scores(["b", "b", "a"], QRELS, ["precision@3", "ndcg@3"])
    assert scores["precision@3"] == pytest.approx(2 / 3)
    assert scores["ndcg@3"] == pytest.approx(m.ndcg_at_k(["b", "a"], QRELS, 3))


def test_equal_scores_rank_by_document_id_descending_as_trec_eval_does() -> None:
    assert m.rank_documents({"d1": 0.5, "d3": 0.9, "d2": 0.5}) == ["d3", "d2", "d1"]
    # The order the scores arrive in does not matter: the ranking is reproducible.
    assert m.rank_documents({"d2": 0.5, "d1": 0.5, "d3": 0.9}) == ["d3", "d2", "d1"]
    # A tie decides the metric: b and x tie, and x ranks first (x > b).
    ranked = m.rank_documents({"b": 0.7, "x": 0.7})
    assert ranked == ["x", "b"] and m.mrr_at_k(ranked, QRELS, 10) == 0.5


def test_chunks_map_to_their_document_with_its_best_score() -> None:
    docs = m.max_score_per_document([("a", 0.4), ("b", 0.9), ("a", 0.95), ("b", 0.1)])
    assert docs == {"a": 0.95, "b": 0.9}
    assert m.rank_documents(docs) == ["a", "b"]


def test_squad_normalisation_exact_match_and_f1() -> None:
    assert m.normalize_answer("The  Cat's hat!") == "cats hat"
    assert m.normalize_answer("A theory of an apple") == "theory of apple"
    assert m.exact_match("the 868 MHz.", ["915 MHz", "868 mhz"]) == 1.0
    assert m.exact_match("868", ["868 MHz"]) == 0.0
    assert m.token_f1("the big cat", ["a big dog"]) == pytest.approx(0.5)  # "big cat" vs "big dog"
    assert m.token_f1("big cat", ["dog", "Big cat."]) == 1.0  # max over references
    # pred "six months six" vs ref "every six months": 2 shared tokens; P = 2/3, R = 2/3.
    assert m.token_f1("six months six", ["every six months"]) == pytest.approx(2 / 3)
    assert m.token_f1("", ["anything"]) == 0.0
    assert m.exact_match("x", []) == 0.0 and m.token_f1("x", []) == 0.0


def test_metric_names_parse_or_fail_clearly() -> None:
    assert m.parse_metric("NDCG@10") == ("ndcg", 10)
    assert m.parse_metric("f1") == ("f1", None)
    assert m.parse_metric("semantic_similarity") == ("semantic_similarity", None)
    for bad in ("ndcg", "f1@3", "foo@10", "hit@0", "map@10"):
        with pytest.raises(ValueError, match="unknown metric"):
            m.parse_metric(bad)


def test_aggregates() -> None:
    assert m.mean([]) is None and m.mean([1.0, 2.0]) == 1.5
    assert m.percentile([4.0, 1.0, 3.0, 2.0], 0.5) == pytest.approx(2.5)
    assert m.percentile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)
    assert m.cosine([1.0, 0.0], [1.0, 1.0]) == pytest.approx(1 / math.sqrt(2))
