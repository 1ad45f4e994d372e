"""The pipeline's models, built from one config and loaded on first use: the embedder (and its
tokenizer, which chunking counts by) and the LLM. The index they read and write is ``Index``
(``indexer/index/index.py``).

Everything heavy (torch, chromadb, llama.cpp) is imported only when a component is first asked
for, so ``indexer --help`` and config checks stay fast.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from functools import cached_property
from typing import TYPE_CHECKING, Any

from indexer.config.models import Config

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from indexer.components.chat_model import ChatModel
    from indexer.components.embedding import EmbeddingIdentity, PassageTokenizer


class Components:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._llm_resolved = False
        self._llm: ChatModel | None = None
        self.llm_notice: str | None = None

    @cached_property
    def embed_model(self) -> HuggingFaceEmbedding:
        from indexer.components.embedding import load_embedding

        return load_embedding(self.config.embedding)

    @cached_property
    def query_embed_model(self) -> HuggingFaceEmbedding:
        """The model that embeds questions: the passage model, or the same model run by another
        backend (``embedding.query_backend``), whose vectors lie in the same space."""
        from indexer.components.embedding import load_embedding, query_config
        from indexer.errors import ModelError

        wanted = query_config(self.config.embedding)
        if wanted == self.config.embedding:
            return self.embed_model
        try:
            return load_embedding(wanted)
        except ModelError as exc:
            if self.config.embedding.query_backend != "auto":
                raise
            # auto is a speed-up, not a requirement: a model that will not export still answers.
            log.warning("questions are embedded with torch instead of onnxruntime: %s", exc)
            return self.embed_model

    @cached_property
    def embedding_identity(self) -> EmbeddingIdentity:
        from indexer.components.embedding import embedding_identity

        return embedding_identity(self.config.embedding, self.embed_model)

    def embedding_identity_dict(self) -> dict[str, Any]:
        return asdict(self.embedding_identity)

    @cached_property
    def query_identity(self) -> EmbeddingIdentity:
        """The identity a query process checks against the index: taken from the query model, so
        such a process never loads the passage model."""
        from indexer.components.embedding import embedding_identity

        return embedding_identity(self.config.embedding, self.query_embed_model)

    def tokenize(self, text: str) -> list[int]:
        """The embedding model's tokenizer, which defines what ``chunk_size`` counts."""
        return self._tokenize(text)

    @cached_property
    def _fast_tokenizer(self) -> Any:
        """A copy of the model's Rust tokenizer without truncation, or ``None`` for a slow one:
        several times faster than ``tokenizer.tokenize``, with no "sequence longer than the model"
        warning, and it counts whole texts (the model's own copy truncates at its input length)."""
        tokenizer_json = self.tokenizer_json
        if tokenizer_json is None:
            return None
        from indexer.ingestion.chunking import token_counter

        return token_counter(tokenizer_json)

    @property
    def tokenizer_json(self) -> str | None:
        """The fast tokenizer, serialised (``embedding.fast_tokenizer_json``)."""
        from indexer.components.embedding import fast_tokenizer_json

        return fast_tokenizer_json(self.embed_model)

    @cached_property
    def passage_tokenizer(self) -> PassageTokenizer | None:
        """The model's passage tokenizing, for the encoder and the chunking workers
        (``embedding.passage_tokenizer``)."""
        from indexer.components.embedding import passage_tokenizer

        return passage_tokenizer(self.embed_model)

    @cached_property
    def _tokenize(self) -> Any:
        counter = self._fast_tokenizer
        if counter is not None:
            return lambda text: counter.encode(text, add_special_tokens=False).ids
        return self.embed_model._model.tokenizer.tokenize

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """The embedding tokenizer's tokens of ``text`` as character spans: what chunking counts
        and cuts by (``ingestion/chunking.py``)."""
        return self._token_spans(text)

    @cached_property
    def _token_spans(self) -> Any:
        counter = self._fast_tokenizer
        if counter is not None:
            from indexer.ingestion.chunking import token_spans_by

            return token_spans_by(counter)
        tokenizer = self.embed_model._model.tokenizer

        # A slow (Python) tokenizer has no offsets: spans of its tokens' lengths, laid end to end.
        def spans(text: str) -> list[tuple[int, int]]:
            out, at = [], 0
            for token in tokenizer.tokenize(text):
                width = max(1, len(token.removeprefix("##").lstrip("▁Ġ")))
                out.append((at, at + width))
                at += width
            return out

        return spans

    @cached_property
    def embedding_max_tokens(self) -> int:
        from indexer.components.embedding import max_tokens

        return max_tokens(self.embed_model)

    @property
    def llm(self) -> ChatModel | None:
        """The LLM, or ``None`` (with ``llm_notice`` set) when none is configured or found."""
        if not self._llm_resolved:
            from indexer.components.llm_loader import load_llm

            self._llm, self.llm_notice = load_llm(self.config.llm)
            self._llm_resolved = True
        return self._llm
