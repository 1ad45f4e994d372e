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
import logging
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from indexer.cpu import cpu_count

if TYPE_CHECKING:
    from indexer.api import Indexer
    from indexer.components.onnx_direct import OnnxEmbedder
    from indexer.config.models import RetrievalMode
    from indexer.query.engine import AnswerStream
    from indexer.query.filters import FilterValue

log = logging.getLogger(__name__)

# Loaded by either half; a process that holds one of them already has native threads (a thread
# pool, a runtime) that a fork would copy mid-work, and is warm anyway: nothing is forked then.
_NATIVE_THREADED = ("chromadb", "onnxruntime", "llama_cpp", "torch", "bm25s")


def can_fork() -> bool:
    """Whether a child forked now starts clean: Linux, this thread alone, no threaded native
    library loaded."""
    return (
        sys.platform == "linux"
        and hasattr(os, "fork")
        and threading.active_count() == 1
        and not any(name in sys.modules for name in _NATIVE_THREADED)
    )


class ForkedCall:
    """``work()`` run in a forked child; ``result()`` waits for its value."""

    def __init__(self, work: Callable[[], Any]) -> None:
        read, write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            self.pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            raise
        if self.pid == 0:  # the child
            os.close(read)
            _call_and_exit(write, work)
        os.close(write)
        self._read = read
        self._done = False
        self._result: Any = None

    def result(self) -> Any:
        """The child's value, or None when it failed (the caller then does the work itself)."""
        if self._done:
            return self._result
        chunks = []
        try:
            while True:
                chunk = os.read(self._read, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            self._done = True
            os.close(self._read)
        try:
            status, payload = pickle.loads(b"".join(chunks))
        except Exception:  # the child died before it wrote (killed, out of memory)
            return None
        self._result = payload if status == "ok" else None
        return self._result

    def close(self) -> None:
        """End the child (at once, if it is still working) and reap it."""
        if self.pid == 0:
            return
        pid, self.pid = self.pid, 0
        if not self._done:
            self._done = True
            os.close(self._read)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _call_and_exit(write: int, work: Callable[[], Any]) -> None:
    """The child's whole life: work, write the result, end without running the parent's exit
    handlers or flushing its copies of the parent's buffers."""
    result: tuple[str, Any] = ("failed", None)
    try:
        result = ("ok", work())
    except BaseException as exc:  # the parent does the work again, and reports it as it always did
        log.debug("work in a forked child failed: %r", exc)
    try:
        data = pickle.dumps(result)
    except Exception:
        data = pickle.dumps(("failed", None))
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(write, view) :]
    except OSError:
        pass  # the parent stopped listening
    finally:
        os._exit(0)


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
