"""A cold ``indexer query`` that an LLM answers: retrieval in a forked child while this process
loads the model, so that the two halves of a cold start take one core each.

Before its first token such a call imports and loads two things that do not depend on each other:
retrieval's (Chroma, onnxruntime, bm25s, the question's embedding and the search) and the
answer's (llama.cpp, the GGUF). Both are mostly Python imports, which threads would run one at a
time under the GIL; a process of their own runs them side by side on two cores. The child is
forked before either is imported, retrieves, sends the passages back through a pipe and ends.
The model loads sooner than the child retrieves, so this process then evaluates the prompt up to
its passages (the system turn and the text before them), which the prompt made with the passages
begins with: llama.cpp evaluates only the rest then.

Only a help, never a change of behaviour: wherever it cannot fork cleanly (not Linux, other
threads running, a native library with threads of its own already loaded) nothing is forked, and
when the child fails for any reason (no index, an unknown filter key, a crash), this process
retrieves the usual way, which raises the same error with the same message it always did.
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
    from indexer.config.models import RetrievalMode
    from indexer.query.engine import AnswerStream, Passages
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


class ChildRetrieval:
    """One question retrieved in a forked child; ``passages()`` waits for them."""

    def __init__(
        self,
        ix: Indexer,
        question: str,
        top_k: int | None,
        filters: Mapping[str, FilterValue] | None,
        mode: RetrievalMode | None,
    ) -> None:
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
            _retrieve_and_exit(write, lambda: ix.retrieve(question, top_k, filters=filters, mode=mode))
        os.close(write)
        self._read = read
        self._done = False

    def passages(self) -> Passages | None:
        """The child's passages, or None when it failed (the caller then retrieves itself)."""
        chunks = []
        try:
            while True:
                chunk = os.read(self._read, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            self.close()
        try:
            status, payload = pickle.loads(b"".join(chunks))
        except Exception:  # the child died before it wrote (killed, out of memory)
            return None
        return payload if status == "ok" else None

    def close(self) -> None:
        """End the child (at once, if it is still working) and reap it."""
        if self._done:
            return
        self._done = True
        os.close(self._read)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def _retrieve_and_exit(write: int, retrieve: Callable[[], Passages]) -> None:
    """The child's whole life: retrieve, write the result, end without running the parent's
    exit handlers or flushing its copies of the parent's buffers."""
    result: tuple[str, Any] = ("failed", None)
    try:
        result = ("ok", retrieve())
    except BaseException as exc:  # the parent retrieves again, and reports it as it always did
        log.debug("retrieval in the child failed: %r", exc)
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


def stream_with_prefetch(
    ix: Indexer,
    question: str,
    top_k: int | None = None,
    filters: Mapping[str, FilterValue] | None = None,
    mode: RetrievalMode | None = None,
) -> AnswerStream:
    """``ix.stream(question, ...)``, with the passages retrieved in a child while the LLM loads
    here, when the call is cold and an LLM is configured; otherwise just ``ix.stream``."""
    if ix.config.llm.provider == "none" or not can_fork():
        return ix.stream(question, top_k=top_k, filters=filters, mode=mode)
    try:
        child = ChildRetrieval(ix, question, top_k, filters, mode)
    except OSError:  # no process or pipe to spare: the usual way
        return ix.stream(question, top_k=top_k, filters=filters, mode=mode)
    try:
        # Loads while the child retrieves. A failure is raised again where stream() asks for the
        # LLM, after retrieval, as without a child (so "no index" still comes first).
        with contextlib.suppress(Exception):
            _ = ix.components.llm
            _evaluate_prompt_prefix(ix, question)
        retrieved = child.passages()
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
