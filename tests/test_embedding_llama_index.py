"""``embedding.provider: llama_index``: LlamaIndex's own ``HuggingFaceEmbedding`` pointed at the
bundled MiniLM gives the vectors of ``model: default``, builds and retrieves the sample, and the
manifest records the class, its kwargs without secrets and its vectors' fingerprint, which refuses
a class whose vectors differ. A class that is not installed is refused when the config loads."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from indexer import Indexer
from indexer.components.embedding import EmbeddingIdentity, SentenceTransformerEmbedder, load_embedder
from indexer.components.embedding.llama_index import LlamaIndexEmbedder, safe_kwargs
from indexer.config.models import EmbeddingConfig
from indexer.errors import IndexMismatchError
from tests.adversarial.helpers import assert_one_paragraph_error, cli

HF_CLASS = "llama_index.embeddings.huggingface.HuggingFaceEmbedding"
TEXTS = [
    "gauge",
    "How often should the rain gauge funnel be cleaned?",
    "Error E-214 means the modem lost its signal; AUR-2231-X is the replacement antenna cable. " * 4,
]


def _hf(**kwargs: Any) -> dict[str, Any]:
    from indexer.components.embedding import resolve_model_location

    return {
        "provider": "llama_index",
        "class": HF_CLASS,
        "kwargs": {"model_name": resolve_model_location("default"), "device": "cpu", **kwargs},
    }


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.slow
def test_huggingface_embedding_through_llama_index_gives_the_default_models_vectors() -> None:
    ours = SentenceTransformerEmbedder(EmbeddingConfig(dtype="float32"))
    theirs = load_embedder(EmbeddingConfig.model_validate(_hf()))
    assert isinstance(theirs, LlamaIndexEmbedder)
    assert _cosines(ours.embed(TEXTS), theirs.embed(TEXTS)).min() >= 0.9999
    question = "rain gauge cleaning interval"
    assert (
        _cosines(np.asarray([ours.embed_query(question)]), np.asarray([theirs.embed_query(question)]))[0]
        >= 0.9999
    )
    # The class's own (fast) tokenizer counts chunks: the same tokens as the model's.
    assert theirs.tokenizer_json is not None
    assert theirs.token_spans(TEXTS[2]) == ours.token_spans(TEXTS[2])
    assert theirs.max_tokens > 0
    identity = theirs.identity
    assert identity.name == HF_CLASS and identity.dimension == 384 and identity.fingerprint
    assert type(theirs.llama_index).__name__ == "HuggingFaceEmbedding"


@pytest.mark.slow
def test_an_index_built_through_llama_index_retrieves_and_refuses_other_vectors(make_config) -> None:
    config = make_config(llm={"provider": "none"}, embedding=_hf(), retrieval={"mode": "vector"})
    ix = Indexer.from_config(config)
    summary = ix.build()
    assert summary.chunks > 0
    hits = ix.retrieve("How often should the silica gel desiccant pack be replaced?", top_k=3)
    assert "guides/maintenance.txt" in [h.file for h in hits]

    manifest = ix.index.current()
    assert manifest is not None
    recorded = manifest.embedding
    assert recorded["name"] == HF_CLASS and recorded["dimension"] == 384
    assert recorded["fingerprint"] == ix.components.embedder.identity.fingerprint
    assert recorded["kwargs"]["model_name"] == _hf()["kwargs"]["model_name"]

    # Other passage vectors (an instruction before each text): another fingerprint, refused.
    other = {"embedding.kwargs.text_instruction": "passage: "}
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        Indexer.from_config(config, other).retrieve("desiccant")
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        Indexer.from_config(config, other).build()
    # The bundled model run by indexer itself is another identity too: refused, not mixed.
    bundled = {"embedding.provider": "sentence_transformers", "embedding.class": None, "embedding.kwargs": {}}
    with pytest.raises(IndexMismatchError, match="name"):
        Indexer.from_config(config, bundled).retrieve("desiccant")


def test_secrets_never_reach_the_manifest() -> None:
    kwargs = {
        "model_name": "m",
        "api_key": "sk-1",
        "auth_token": "t",
        "nested": {"password": "p", "batch": 4},
        "embed_batch_size": 8,
        "apiKey": "k",
        "max_tokens": 512,
    }
    kept = {"model_name": "m", "nested": {"batch": 4}, "embed_batch_size": 8, "max_tokens": 512}
    assert safe_kwargs(kwargs) == kept
    identity = EmbeddingIdentity(
        name="x", normalize=True, query_prefix="", passage_prefix="", kwargs=safe_kwargs(kwargs)
    )
    assert "sk-1" not in json.dumps(identity.record())


def test_a_class_that_is_not_installed_is_refused_when_the_config_loads(make_config) -> None:
    missing = "llama_index.embeddings.nonexistent_provider.NoSuchEmbedding"
    config = make_config(
        llm={"provider": "none"}, embedding={"provider": "llama_index", "class": missing, "kwargs": {}}
    )
    result = cli("status", str(config))
    assert_one_paragraph_error(
        result,
        str(config),
        "embedding.class",
        missing,
        "pip install llama-index-embeddings-nonexistent-provider",
    )
    no_class = make_config(llm={"provider": "none"}, embedding={"provider": "llama_index"})
    assert_one_paragraph_error(cli("status", str(no_class)), str(no_class), "embedding", "class")
