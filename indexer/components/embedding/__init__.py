"""The embedding model, behind one interface: ``Embedder`` (``embedder.py``).

- ``load.py``: where a model is, how it loads (``HuggingFaceEmbedding``), its number format and the
  settings questions are embedded with;
- ``tokenizer.py``: the model's tokenizer, for chunking and for the encoder's token ids;
- ``forward.py``: passage vectors in batches cut by tokens, one stream per CPU core;
- ``identity.py``: ``EmbeddingIdentity``, what an index records and checks;
- ``llama_index.py``: ``embedding.provider: llama_index``, any LlamaIndex ``BaseEmbedding``.

The torch-free ONNX route for questions and small builds is ``components/onnx_direct.py``'s
``OnnxEmbedder``, another ``Embedder``. Nothing here imports torch, transformers or LlamaIndex until
a model is loaded.
"""

from __future__ import annotations

import logging

from indexer.components.embedding.embedder import Embedder, Passages, SentenceTransformerEmbedder
from indexer.components.embedding.forward import CPU_FORWARD_TOKENS, forward_batches
from indexer.components.embedding.identity import (
    EmbeddingIdentity,
    config_identity,
    identity_for,
    identity_to_check,
)
from indexer.components.embedding.load import (
    DEFAULT_MODEL_NAME,
    display_name,
    query_config,
    resolve_dtype,
    resolve_model_location,
)
from indexer.components.embedding.tokenizer import PassageTokenizer, TextTokens, token_counter, token_spans_by
from indexer.config.models import EmbeddingConfig

__all__ = [
    "CPU_FORWARD_TOKENS",
    "DEFAULT_MODEL_NAME",
    "Embedder",
    "EmbeddingIdentity",
    "PassageTokenizer",
    "Passages",
    "SentenceTransformerEmbedder",
    "TextTokens",
    "config_identity",
    "display_name",
    "forward_batches",
    "identity_for",
    "identity_to_check",
    "load_embedder",
    "load_query_embedder",
    "prepare_query_route",
    "query_config",
    "resolve_dtype",
    "resolve_model_location",
    "token_counter",
    "token_spans_by",
]

log = logging.getLogger(__name__)


def load_embedder(config: EmbeddingConfig) -> Embedder:
    """The passage embedder ``config`` names; nothing loads until it is used."""
    if config.provider == "llama_index":
        from indexer.components.embedding.llama_index import LlamaIndexEmbedder

        return LlamaIndexEmbedder(config)
    return SentenceTransformerEmbedder(config)


def load_query_embedder(config: EmbeddingConfig, passages: Embedder) -> Embedder:
    """The embedder of questions: ``passages`` itself, or the same model run by another backend
    (``embedding.query_backend``), whose vectors lie in the same space. On the ONNX backend, once
    the model has a recipe (``onnx_direct.py``), without importing torch."""
    from indexer.errors import ModelError

    wanted = query_config(config)
    if wanted.backend == "onnx" and config.provider == "sentence_transformers":
        from indexer.components.onnx_direct import load_direct

        direct = load_direct(wanted)
        if direct is not None:
            return direct
    if wanted == config:
        return passages
    other = SentenceTransformerEmbedder(wanted)
    try:
        other.llama_index  # noqa: B018  (load now: a model that will not export falls back below)
    except ModelError as exc:
        if config.query_backend != "auto":
            raise
        # auto is a speed-up, not a requirement: a model that will not export still answers.
        log.warning("questions are embedded with torch instead of onnxruntime: %s", exc)
        return passages
    return other


def prepare_query_route(config: EmbeddingConfig) -> None:
    """Give questions the torch-free route (``onnx_direct.py``) where ``embedding.query_backend``
    picks ONNX and the model has no recipe yet: a build, which loaded torch anyway, pays the export
    once, not the first cold query."""
    from indexer.components.embedding.load import load_embedding
    from indexer.components.onnx_direct import load_direct
    from indexer.errors import ModelError

    wanted = query_config(config)
    if (
        config.provider != "sentence_transformers"
        or wanted.backend != "onnx"
        or load_direct(wanted) is not None
    ):
        return
    try:
        load_embedding(wanted)
    except ModelError as exc:  # the query falls back to torch and says so
        log.debug("no ONNX route for questions: %s", exc)
