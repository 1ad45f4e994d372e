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
    from indexer.components.onnx_direct import OnnxEmbedder


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
    def query_embed_model(self) -> HuggingFaceEmbedding | OnnxEmbedder:
        """The model that embeds questions: the passage model, or the same model run by another
        backend (``embedding.query_backend``), whose vectors lie in the same space. On the ONNX
        backend, once the model has a recipe (``onnx_direct.py``), without importing torch."""
        from indexer.components.embedding import load_embedding, query_config
        from indexer.errors import ModelError

        wanted = query_config(self.config.embedding)
        if wanted.backend == "onnx":
            from indexer.components.onnx_direct import load_direct

            direct = load_direct(wanted)
            if direct is not None:
                return direct
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

    def prepare_query_route(self) -> None:
        """Give questions the torch-free route (``onnx_direct.py``) where ``embedding.query_backend``
        picks ONNX and the model has no recipe yet: a build, which loaded torch anyway, pays the
        export once, not the first cold query."""
        from indexer.components.embedding import load_embedding, query_config
        from indexer.components.onnx_direct import load_direct
        from indexer.errors import ModelError

        wanted = query_config(self.config.embedding)
        if wanted.backend != "onnx" or load_direct(wanted) is not None:
            return
        try:
            load_embedding(wanted)
        except ModelError as exc:  # the query falls back to torch and says so
            log.debug("no ONNX route for questions: %s", exc)

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
        from indexer.components.embedding import EmbeddingIdentity, config_identity, embedding_identity
        from indexer.components.onnx_direct import OnnxEmbedder

        model = self.query_embed_model
        if isinstance(model, OnnxEmbedder):
            identity = config_identity(self.config.embedding)
            if "fingerprint" in identity:  # found on disk, as the recipe's file name says
                return EmbeddingIdentity(
                    **identity, dimension=model.dimension, backend=self.config.embedding.backend
                )
        return embedding_identity(self.config.embedding, model)  # type: ignore[arg-type]

    @property
    def query_route(self) -> str:
        """How questions are embedded, for ``doctor``: the torch-free ONNX route, or torch."""
        from indexer.components.onnx_direct import OnnxEmbedder

        model = self.query_embed_model
        if isinstance(model, OnnxEmbedder):
            return "onnxruntime + tokenizers (torch not imported)"
        inner = getattr(getattr(model, "_model", None), "__getitem__", None)
        first = inner(0) if inner is not None else None
        if getattr(getattr(first, "model", None), "runs_own_threads", False):
            return "sentence-transformers + onnxruntime (torch imported: no torch-free recipe for this model)"
        return "sentence-transformers + torch"

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
        if not self._llm_resolved and self.config.llm.provider == "none":
            # Not through load_llm: its module loads llama.cpp and LlamaIndex (1 s or more), which
            # a retrieve-only query never needs.
            self._llm_resolved = True
        if not self._llm_resolved:
            from indexer.components.llm_loader import load_llm

            self._llm, self.llm_notice = load_llm(self.config.llm, self.config.source)
            self._llm_resolved = True
        return self._llm
