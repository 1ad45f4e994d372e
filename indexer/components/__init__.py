"""The pipeline's models, built from one config and loaded on first use: the passage embedder
(and its tokenizer, which chunking counts by), the question embedder and the LLM. The index they
read and write is ``Index`` (``indexer/index/index.py``).

Everything heavy (torch, chromadb, llama.cpp) is imported only when a component is first asked
for, so ``indexer --help`` and config checks stay fast.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from indexer.config.models import Config

if TYPE_CHECKING:
    from indexer.components.chat_model import ChatModel
    from indexer.components.embedding import Embedder


class Components:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._llm_resolved = False
        self._llm: ChatModel | None = None
        self.llm_notice: str | None = None

    @cached_property
    def embedder(self) -> Embedder:
        """Passages' vectors and the tokenizer chunks are counted by (``embedding.model``); the
        model loads when first used."""
        from indexer.components.embedding import load_embedder

        return load_embedder(self.config.embedding)

    @cached_property
    def query_embedder(self) -> Embedder:
        """Questions' vectors: the passage embedder, or the same model run by another backend
        (``embedding.query_backend``; on ONNX without importing torch), in the same vector space."""
        from indexer.components.embedding import load_query_embedder

        return load_query_embedder(self.config.embedding, self.embedder)

    @property
    def llm(self) -> ChatModel | None:
        """The LLM, or ``None`` (with ``llm_notice`` set) when none is configured or found."""
        if not self._llm_resolved and self.config.llm.provider == "none":
            # Not through load_llm: its module loads llama.cpp and LlamaIndex (1 s or more), which
            # a retrieve-only query never needs.
            self._llm_resolved = True
        if not self._llm_resolved:
            from indexer.components.llm_loader import load_llm

            self._llm, self.llm_notice = load_llm(self.config.llm, self.config.source)
            self._llm_resolved = True
        return self._llm
