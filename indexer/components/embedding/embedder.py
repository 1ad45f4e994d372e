"""``Embedder``: the one interface every user of the embedding model goes through (builds, their
encoder process and Ray actors, record sync, questions, ``/v1/embeddings``, eval), and its
implementation over a sentence-transformers model loaded behind LlamaIndex's
``HuggingFaceEmbedding``. The model loads on first use: a no-op build or a status check never
imports torch."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from indexer.config.models import EmbeddingConfig

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from indexer.components.embedding.identity import EmbeddingIdentity
    from indexer.components.embedding.tokenizer import PassageTokenizer, TextTokens

Passages = Sequence[str] | Sequence[Any]
"""Passages to embed: their texts, or their token ids from the embedder's ``passage_tokenizer``."""


class Embedder(ABC):
    """Passage and question vectors of one vector space, the tokenizer that chunks are counted by,
    and the ``identity`` an index records and checks."""

    config: EmbeddingConfig

    @abstractmethod
    def embed(self, passages: Passages) -> Any:
        """Passage vectors (a float32 numpy array, one row per passage, in order), from texts or
        from the token ids of ``passage_tokenizer``."""

    @abstractmethod
    def embed_query(self, question: str) -> list[float]:
        """A question's vector (with ``embedding.query_prefix``)."""

    @property
    @abstractmethod
    def identity(self) -> EmbeddingIdentity:
        """The whole identity of the vectors this embedder gives (the model loads for it)."""

    @property
    @abstractmethod
    def max_tokens(self) -> int:
        """The tokens of a passage the model reads (0: no limit known)."""

    @property
    @abstractmethod
    def tokenizer_json(self) -> str | None:
        """The model's fast tokenizer, serialised, for chunking workers that rebuild it without the
        model; ``None`` where there is none (chunks are then counted in this process)."""

    @property
    def passage_tokenizer(self) -> PassageTokenizer | None:
        """The passage tokenizing that gives ``embed`` token ids, or ``None``: ``embed`` then takes
        texts only."""
        return None

    @property
    def loaded(self) -> bool:
        """Whether the model behind this embedder has been loaded in this process."""
        return True

    @property
    def route(self) -> str:
        """How vectors are computed, for ``doctor``."""
        return type(self).__name__

    @functools.cached_property
    def _tokens(self) -> TextTokens:
        from indexer.components.embedding.tokenizer import TextTokens

        tokenizer_json = self.tokenizer_json
        return TextTokens(tokenizer_json, None if tokenizer_json is not None else self._slow_tokenizer())

    def _slow_tokenizer(self) -> Any:
        """A tokenizer with ``tokenize(text) -> list[str]`` where ``tokenizer_json`` is ``None``."""
        raise NotImplementedError(f"{type(self).__name__} has no tokenizer")

    def tokenize(self, text: str) -> list[Any]:
        """The model's tokens of ``text``, which define what ``chunk_size`` counts."""
        return self._tokens.tokenize(text)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """The model's tokens of ``text`` as character spans: what chunking counts and cuts by
        (``ingestion/chunking.py``)."""
        return self._tokens.spans(text)

    @property
    def llama_index(self) -> BaseEmbedding:
        """This model as a LlamaIndex ``BaseEmbedding``, for LlamaIndex code of the user's own."""
        raise NotImplementedError(f"{type(self).__name__} has no LlamaIndex embedding")


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model (``embedding.model``), run by torch or by onnxruntime inside
    sentence-transformers (``embedding.backend``), in the number format ``embedding.dtype`` picks."""

    def __init__(self, config: EmbeddingConfig) -> None:
        self.config = config

    @functools.cached_property
    def _hf(self) -> HuggingFaceEmbedding:
        from indexer.components.embedding.load import load_embedding

        return load_embedding(self.config)

    @property
    def sentence_transformer(self) -> Any:
        """The loaded ``SentenceTransformer`` (LlamaIndex exposes no public handle to it): for
        benchmarks and tests that compare with the library's own ``encode``."""
        return self._hf._model

    @property
    def loaded(self) -> bool:
        return "_hf" in self.__dict__

    @property
    def llama_index(self) -> HuggingFaceEmbedding:
        return self._hf

    @functools.cached_property
    def passage_tokenizer(self) -> PassageTokenizer | None:
        from indexer.components.embedding.tokenizer import passage_tokenizer

        return passage_tokenizer(self.sentence_transformer)

    @property
    def tokenizer_json(self) -> str | None:
        from indexer.components.embedding.tokenizer import fast_tokenizer_json

        return fast_tokenizer_json(self.sentence_transformer)

    def _slow_tokenizer(self) -> Any:
        return self.sentence_transformer.tokenizer

    @functools.cached_property
    def max_tokens(self) -> int:
        return int(self.sentence_transformer.max_seq_length or 0)

    @functools.cached_property
    def identity(self) -> EmbeddingIdentity:
        from indexer.components.embedding.identity import loaded_identity

        st = self.sentence_transformer
        dimension = st.get_embedding_dimension()
        if dimension is None:  # sentence-transformers could not tell (no pooling module): ask the model
            dimension = len(st.encode("dimension"))
        return loaded_identity(self.config, int(dimension))

    def embed(self, passages: Passages) -> Any:
        """Passage vectors, the way every build embeds them: from the ``passage_tokenizer``'s ids
        where one was checked for this model (cheaper than the model's own preprocessing, and ids
        let a CPU cut its batches by tokens), tokenized in parts by the CPU streams that then
        compute them; else by the model's ``encode``."""
        from indexer.components.embedding import forward

        st, tokenizer = self.sentence_transformer, self.passage_tokenizer
        batch_size, normalize = self.config.batch_size, self.config.normalize
        if passages and not isinstance(passages[0], str):
            assert tokenizer is not None  # ids come only from this embedder's tokenizer
            return forward.encode_token_ids(st, tokenizer, passages, batch_size, normalize)
        return forward.embed_texts(st, tokenizer, passages, batch_size, normalize)

    def encode(self, texts: Sequence[str]) -> Any:
        """Passage vectors by the model's own ``encode``, as LlamaIndex's
        ``get_text_embedding_batch`` computes them (the reference ``embed`` is checked against)."""
        from indexer.components.embedding.forward import encode_passages

        config = self.config
        return encode_passages(self.sentence_transformer, texts, config.batch_size, config.normalize)

    def embed_query(self, question: str) -> list[float]:
        return self._hf.get_query_embedding(question)

    @property
    def streams(self) -> int:
        """The forward streams ``embed`` runs at once (one per core on a torch CPU, else one)."""
        from indexer.components.embedding.forward import streams_of

        return streams_of(self.sentence_transformer)

    @property
    def route(self) -> str:
        first = self.sentence_transformer[0]
        if getattr(getattr(first, "model", None), "runs_own_threads", False):
            return "sentence-transformers + onnxruntime (torch imported: no torch-free recipe for this model)"
        return "sentence-transformers + torch"
