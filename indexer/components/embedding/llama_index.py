"""``embedding.provider: llama_index``: any LlamaIndex ``BaseEmbedding`` (``embedding.class``, built
with ``embedding.kwargs``) as an ``Embedder``.

What indexer cannot know about such a class it measures: its identity's fingerprint is a hash of
the vectors it gives for a fixed probe text, as a passage and as a question, so an index refuses a
class or kwargs that give other vectors. Chunks are counted by the class's own tokenizer where it
exposes a fast (Rust) one; else by ``TextTokens.fallback``: words and punctuation marks, which is
close to what a subword tokenizer counts for English prose, and under it for other text, so
leave headroom in ``chunking.chunk_size`` below the model's input length.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from indexer.components.embedding.embedder import Embedder, Passages
from indexer.config.models import EmbeddingConfig
from indexer.config.plugins import import_class, is_secret
from indexer.errors import ModelError

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from indexer.components.embedding.identity import EmbeddingIdentity
    from indexer.components.embedding.tokenizer import TextTokens

# Embedded as a passage and as a question; its vectors are the fingerprint.
PROBE_TEXT = "indexer probe: the rain gauge bucket tips once for every 0.2 mm of rain."
# Rounded before hashing: the same class and kwargs on another CPU or library build give vectors
# that differ in the last bits; another model or instruction moves them by far more.
_PROBE_DECIMALS = 2
def safe_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` without secrets (keys naming an API key, token, password, secret ...), at any
    depth, for the manifest."""

    def keep(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): keep(v) for k, v in value.items() if not is_secret(str(k))}
        if isinstance(value, list | tuple):
            return [keep(v) for v in value]
        return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)

    return keep(dict(kwargs))  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=4)
def _load_cached(config_json: str) -> BaseEmbedding:
    """One instance per process and config, as ``load.load_embedding`` keeps its models: a build
    and its manifest's identity share it."""
    from llama_index.core.base.embeddings.base import BaseEmbedding

    config = EmbeddingConfig.model_validate_json(config_json)
    path = str(config.class_)
    try:
        cls = import_class(path)
    except ValueError as exc:
        raise ModelError(f"embedding.class: {exc}") from None
    if not issubclass(cls, BaseEmbedding):
        raise ModelError(f"embedding.class {path!r} is not a LlamaIndex BaseEmbedding")
    try:
        return cls(**config.kwargs)
    except Exception as exc:  # any integration's own errors
        raise ModelError(
            f"cannot create embedding.class {path!r} with embedding.kwargs {sorted(config.kwargs)}: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def load_llama_index_embedding(config: EmbeddingConfig) -> BaseEmbedding:
    return _load_cached(config.model_dump_json())


class LlamaIndexEmbedder(Embedder):
    """Vectors from a LlamaIndex ``BaseEmbedding``; passages are embedded from their texts."""

    def __init__(self, config: EmbeddingConfig) -> None:
        self.config = config

    @functools.cached_property
    def _model(self) -> BaseEmbedding:
        return load_llama_index_embedding(self.config)

    @property
    def loaded(self) -> bool:
        return "_model" in self.__dict__

    @property
    def llama_index(self) -> BaseEmbedding:
        return self._model

    @property
    def route(self) -> str:
        return f"LlamaIndex {self.config.class_}"

    def embed(self, passages: Passages) -> Any:
        import numpy as np

        texts = [str(p) for p in passages]
        if not texts:
            return np.empty((0, self.identity.dimension or 0), dtype=np.float32)
        return np.asarray(self._model.get_text_embedding_batch(texts), dtype=np.float32)

    def embed_query(self, question: str) -> list[float]:
        return [float(x) for x in self._model.get_query_embedding(question)]

    @functools.cached_property
    def identity(self) -> EmbeddingIdentity:
        import dataclasses

        import numpy as np

        from indexer.components.embedding.identity import config_identity

        passage = np.asarray(self._model.get_text_embedding(PROBE_TEXT), dtype=np.float64)
        question = np.asarray(self._model.get_query_embedding(PROBE_TEXT), dtype=np.float64)
        rounded = [np.round(v, _PROBE_DECIMALS).tolist() for v in (passage, question)]
        fingerprint = hashlib.sha256(json.dumps(rounded).encode()).hexdigest()[:16]
        return dataclasses.replace(
            config_identity(self.config), fingerprint=fingerprint, dimension=len(passage)
        )

    @functools.cached_property
    def _hf_tokenizer(self) -> Any:
        """The class's own tokenizer where it has one: a ``tokenizer`` attribute, or that of the
        sentence-transformers model inside (``HuggingFaceEmbedding``)."""
        model = self._model
        for owner in (model, getattr(model, "_model", None)):
            tokenizer = getattr(owner, "tokenizer", None) if owner is not None else None
            if tokenizer is not None and hasattr(tokenizer, "tokenize"):
                return tokenizer
        return None

    @property
    def tokenizer_json(self) -> str | None:
        backend = getattr(self._hf_tokenizer, "backend_tokenizer", None)
        return backend.to_str() if backend is not None else None

    @functools.cached_property
    def _tokens(self) -> TextTokens:
        from indexer.components.embedding.tokenizer import TextTokens

        tokenizer_json = self.tokenizer_json
        if tokenizer_json is not None:
            return TextTokens(tokenizer_json)
        if self._hf_tokenizer is not None:
            return TextTokens(None, self._hf_tokenizer)
        return TextTokens.fallback()

    @functools.cached_property
    def max_tokens(self) -> int:
        for owner in (self._model, getattr(self._model, "_model", None)):
            for name in ("max_length", "max_seq_length"):
                value = getattr(owner, name, None)
                if isinstance(value, int) and value > 0:
                    return value
        return 0
