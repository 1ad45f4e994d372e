"""Token ids made by the chunking workers or the encoder (``embedding.PassageTokenizer``): the
model's own input, tensor for tensor, and the vectors it gives are the ones its texts give, in the
forward batches a CPU cuts (``embedding.forward_batches``); a tokenizer that would differ from the
model's preprocessing is not used, and the model's own preprocessing runs."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from indexer import Indexer
from indexer.components import embedding
from indexer.components.embedding import SentenceTransformerEmbedder, forward
from indexer.config.models import EmbeddingConfig
from indexer.ingestion.tables import embedding_text
from tests.conftest import SAMPLE_DIR, SHARED_DATA, write_config
from tests.support.stored import stored_chunks

MSMARCO = SHARED_DATA / "msmarco_subset" / "corpus.jsonl"


def _texts() -> list[str]:
    """Real passages (MS MARCO's, and the sample documents whole: longer than the model reads):
    enough for two forward batches of 32 and several streams of 8."""
    with MSMARCO.open(encoding="utf-8") as fh:
        passages = [json.loads(line)["text"] for line in itertools.islice(fh, 48)]
    return passages + [p.read_text(encoding="utf-8") for p in sorted(SAMPLE_DIR.rglob("*.txt"))]


def _model(**settings) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(EmbeddingConfig(dtype="float32", **settings))


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["", "passage: "])
def test_the_passage_tokenizer_gives_the_models_own_input_and_its_vectors(prefix) -> None:
    import torch

    model = _model(passage_prefix=prefix, batch_size=32)
    tokenizer = model.passage_tokenizer
    assert tokenizer is not None and tokenizer.prompt == prefix
    texts = _texts()
    ids = tokenizer(texts)
    assert max(len(i) for i in ids) == model.max_tokens  # the long ones are truncated
    assert all(np.array_equal(a, b) for a, b in zip(tokenizer.in_one_call(texts), ids, strict=True))
    for start in range(0, len(texts), 32):
        want = model.sentence_transformer.preprocess(texts[start : start + 32], prompt=prefix or None)
        got = tokenizer.batch(ids[start : start + 32])
        assert set(got) == set(want)
        for key, value in want.items():
            assert torch.equal(got[key], value) if isinstance(value, torch.Tensor) else got[key] == value
    from_ids = model.embed(ids)
    from_texts = model.encode(texts)
    assert from_ids.dtype == np.float32 and from_ids.shape == from_texts.shape
    np.testing.assert_allclose(from_ids, from_texts, atol=1e-5)


def test_a_tokenizer_that_differs_from_the_models_preprocessing_is_not_used(monkeypatch) -> None:
    st = _model().sentence_transformer
    real = st.preprocess

    def preprocess_that_cleans_text_in_python(texts, **kwargs):  # the fault: what Rust would not do
        return real([t.replace("!", ".") for t in texts], **kwargs)

    monkeypatch.setattr(st, "preprocess", preprocess_that_cleans_text_in_python)
    assert embedding.tokenizer.passage_tokenizer(st) is None
    monkeypatch.setattr(st, "preprocess", real)
    monkeypatch.setattr(st.tokenizer, "padding_side", "left")
    assert embedding.tokenizer.passage_tokenizer(st) is None


def test_forward_batches_cut_a_cpu_call_for_the_fewest_padded_tokens_within_its_limits() -> None:
    import random

    rng = random.Random(3)
    # Full-length chunks and the shorter last chunks of documents, as a build hands them.
    for _ in range(50):
        lengths = [256] * rng.randint(0, 300) + [rng.randint(1, 256) for _ in range(rng.randint(0, 120))]
        rng.shuffle(lengths)
        max_passages, max_tokens = rng.choice([1, 4, 16, 64]), rng.choice([100, 4096])
        fixed = embedding.forward_batches(lengths, max_passages)
        cut = embedding.forward_batches(lengths, max_passages, max_tokens)
        for batches in (fixed, cut):
            order = [i for batch in batches for i in batch]
            assert sorted(order) == list(range(len(lengths)))  # every passage once
            assert [lengths[i] for i in order] == sorted(lengths, reverse=True)  # longest first
            assert all(0 < len(batch) <= max_passages for batch in batches)
        assert all(len(b) == 1 or max(lengths[i] for i in b) * len(b) <= max_tokens for b in cut)
        if max_tokens >= 256 * max_passages:  # the budget binds nothing: only the cuts differ
            padded = [sum(max(lengths[i] for i in b) * len(b) for b in batches) for batches in (cut, fixed)]
            assert padded[0] <= padded[1]


@pytest.mark.slow
@pytest.mark.parametrize("tokenize_in_workers", [True, "auto"])
def test_a_build_hands_the_encoder_token_ids_from_the_chunking_workers_on_a_gpu(
    tmp_path, monkeypatch, tokenize_in_workers
) -> None:
    """Forced here, and on a GPU by default; on a CPU (``auto`` here) the encoder is handed texts
    and tokenizes them itself: the workers share its cores. Either way the model runs from ids,
    not through its own (slower) preprocessing."""
    # Which way the model is called, counted: the real functions run, nothing is faked.
    calls = {"ids": 0, "texts": 0, "handed_texts": 0, "handed_ids": 0}
    by_ids, by_texts = forward.encode_token_ids, forward.encode_passages
    embed = SentenceTransformerEmbedder.embed

    def counted_by_ids(*args):
        calls["ids"] += 1
        return by_ids(*args)

    def counted_by_texts(*args):
        calls["texts"] += 1
        return by_texts(*args)

    def counted_embed(self, passages):
        calls["handed_texts" if isinstance(passages[0], str) else "handed_ids"] += 1
        return embed(self, passages)

    monkeypatch.setattr(forward, "encode_token_ids", counted_by_ids)
    monkeypatch.setattr(forward, "encode_passages", counted_by_texts)
    monkeypatch.setattr(SentenceTransformerEmbedder, "embed", counted_embed)
    config = write_config(
        tmp_path,
        SAMPLE_DIR,
        llm={"provider": "none"},
        # onnx_max_chunks 0: the torch route, whose input this test follows, for a build this small.
        build={
            "workers": 1,
            "encoder_process": False,
            "tokenize_in_workers": tokenize_in_workers,
            "onnx_max_chunks": 0,
        },
        embedding={"dtype": "float32", "batch_size": 4},
    )
    ix = Indexer.from_config(config)
    summary = ix.build()
    assert summary.chunks > 8
    assert calls["ids"] > 1 and calls["texts"] == 0
    if tokenize_in_workers is True:
        assert calls["handed_ids"] > 1 and calls["handed_texts"] == 0
    else:
        assert calls["handed_texts"] > 1 and calls["handed_ids"] == 0
    store = ix.index.chunk_store(create=False)
    hits = stored_chunks(ix)
    got = store._collection.get(include=["embeddings"])
    stored = dict(zip(got["ids"], np.asarray(got["embeddings"]), strict=True))
    # A table chunk (the sample's CSV) is embedded without its pipe syntax (tables.embedding_text).
    want = ix.components.embedder.encode([embedding_text(h.text) for h in hits])
    np.testing.assert_allclose(np.stack([stored[h.id] for h in hits]), want, atol=1e-5)
