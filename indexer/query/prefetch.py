"""A cold ``indexer query``: work that does not depend on each other in a forked child, so that
the two halves of a cold start take one core each.

They are mostly Python imports, which threads would run one at a time under the GIL; a process of
its own runs them side by side. The child is forked before either half is imported:

- Answered by an LLM: the child retrieves (Chroma, onnxruntime, bm25s, the question's embedding
  and the search) and sends the passages back through a pipe, while this process loads the model
  (llama.cpp, the GGUF). The model loads sooner, so this process then evaluates the prompt up to
  its passages (the system turn and the text before them), which the prompt made with the
  passages begins with: llama.cpp evaluates only the rest then.
- Retrieve-only: the child embeds the question (onnxruntime, its session and the tokenizer: on
  the torch-free route only) and sends the vector back, while this process imports and opens
  Chroma and the keyword index. (With an LLM the cores are busy already: a third process there
  measured no faster.)

Only a help, never a change of behaviour: wherever it cannot fork cleanly (not Linux, other
threads running, a native library with threads of its own already loaded) nothing is forked, and
when a child fails for any reason (no index, an unknown filter key, a crash), the work is done
the usual way, which raises the same error with the same message it always did.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from indexer.cpu import cpu_count
from indexer.forked import ForkedCall, can_fork

if TYPE_CHECKING:
    from indexer.api import Indexer
    from indexer.components.onnx_direct import OnnxEmbedder
    from indexer.config.models import RetrievalMode
    from indexer.query.engine import AnswerStream
    from indexer.query.filters import FilterValue


def _question_vector(embedder: OnnxEmbedder, question: str) -> ForkedCall | None:
    """The question's vector, computed in a child of its own while this process imports and opens
    Chroma: about a quarter of a cold retrieval (onnxruntime, its session, the tokenizer) taken off
    its way. Any failure leaves the embedding to retrieval, as without a child."""
    try:
        return ForkedCall(lambda: embedder.embed_query(question.strip()))  # stripped, as retrieval embeds it
    except OSError:
        return None


def stream_with_prefetch(
    ix: Indexer,
    question: str,
    top_k: int | None = None,
    filters: Mapping[str, FilterValue] | None = None,
    mode: RetrievalMode | None = None,
) -> AnswerStream:
    """``ix.stream(question, ...)``, cold: with an LLM, the passages retrieved in a child while
    the LLM loads here; without one, the question embedded in a child while Chroma loads here.
    Warm, or where nothing can be forked, just ``ix.stream``."""
    if not can_fork():
        return ix.stream(question, top_k=top_k, filters=filters, mode=mode)
    if ix.config.llm.provider != "none":
        return _stream_beside_child(ix, question, top_k, filters, mode)
    from indexer.components.onnx_direct import OnnxEmbedder

    embedder = ix.components.query_embedder
    # Only on the torch-free route: another embedder would load torch in the child.
    if (mode or ix.config.retrieval.mode) == "bm25" or not isinstance(embedder, OnnxEmbedder):
        return ix.stream(question, top_k=top_k, filters=filters, mode=mode)
    vector = _question_vector(embedder, question)
    try:
        if vector is not None:
            embedder.expect_vector(question.strip(), vector.result)
        return ix.stream(question, top_k=top_k, filters=filters, mode=mode)
    finally:
        if vector is not None:
            vector.close()


def _stream_beside_child(
    ix: Indexer,
    question: str,
    top_k: int | None,
    filters: Mapping[str, FilterValue] | None,
    mode: RetrievalMode | None,
) -> AnswerStream:
    try:
        child = ForkedCall(lambda: ix.retrieve(question, top_k, filters=filters, mode=mode))
    except OSError:  # no process or pipe to spare: the usual way
        return ix.stream(question, top_k=top_k, filters=filters, mode=mode)
    try:
        # Loads while the child retrieves. A failure is raised again where stream() asks for the
        # LLM, after retrieval, as without a child (so "no index" still comes first).
        with contextlib.suppress(Exception):
            _ = ix.components.llm
            _evaluate_prompt_prefix(ix, question)
        retrieved = child.result()
    finally:
        child.close()
    return ix._engine.stream(question, top_k, filters=filters, mode=mode, retrieved=retrieved)


def _evaluate_prompt_prefix(ix: Indexer, question: str) -> None:
    """While the child still retrieves: the answer's prompt up to its passages (the system turn,
    the template's markers, the qa_prompt's text before them) evaluated into llama.cpp's KV cache,
    on the cores the child leaves free. The prompt made with the passages begins with the same
    tokens, so only the rest is evaluated then; the answer is the same."""
    from indexer.query.engine import Source, prompt_messages

    llm = ix.components.llm
    evaluate = getattr(llm, "evaluate_prefix", None)
    if evaluate is None or ix.config.query.answer_style == "extract":
        return
    query = ix.config.query
    # Two prompts that differ from their first passage on: what they share is what comes before.
    one = Source(rank=1, score=0.0, file="a", doc_id="a", text="a", metadata={})
    two = Source(rank=2, score=0.0, file="b", doc_id="b", text="b", metadata={})
    evaluate(
        prompt_messages(query, question, [one]),
        prompt_messages(query, question, [two]),
        threads=max(1, (ix.config.llm.n_threads or cpu_count()) - 1),
    )
