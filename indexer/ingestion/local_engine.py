"""The local build engine: files read and chunked by a pool of processes while this process embeds.

Three stages run at once, with bounded buffers between them, so the slowest sets the pace:

- reading and chunking: the tokenizer-driven splitter is CPU-bound Python, which threads would
  serialise on the GIL, so it runs in worker processes (``build.workers``);
- encoding: here, up to eight embedder batches per call (whatever is chunked once one batch is
  ready), so the model sorts them by length and keeps its batches full;
- writing: the pipeline's writer thread (``ingestion/pipeline.py``) stores the previous flush while
  the next one encodes.

The read-ahead is counted in chunks: chunking may run up to ``2 × flush`` chunks ahead of the
encoder, whatever the documents' sizes.
"""

from __future__ import annotations

import multiprocessing.context
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from functools import lru_cache
from multiprocessing import popen_forkserver, spawn
from typing import TYPE_CHECKING, Any

from indexer.ingestion.prepare import Prepared, WorkItem, read_and_chunk

if TYPE_CHECKING:
    from indexer.components import Components

_ENCODE_BATCHES = 8


def resolve_workers(workers: int | str) -> int:
    """``build.workers``: ``auto`` leaves one core to the encoder, and uses at least one."""
    if isinstance(workers, int):
        return workers
    return max(1, (os.cpu_count() or 2) - 1)


class LocalEngine:
    def __init__(self, components: Components, *, flush_chunks: int) -> None:
        self.components = components
        self.flush_chunks = flush_chunks
        # Chunks per encode call: enough batches for length sorting to keep padding low, few
        # enough that encoding starts while the first files are still being chunked.
        self.batch_size = components.config.embedding.batch_size
        self.encode_chunks = min(flush_chunks, _ENCODE_BATCHES * self.batch_size)
        self.workers = resolve_workers(components.config.build.workers)
        # An embedded index keeps a keyword index (index/keyword.py): its terms are made here.
        self.keyword_terms = components.config.vector_store.persist_dir is not None
        self.seconds: defaultdict[str, float] = defaultdict(float)  # busy time per stage: read_chunk, encode

    def prepare(self, items: Sequence[WorkItem]) -> Iterator[Prepared]:
        from indexer.components.embedding import encode_passages

        buffer = _ChunkBuffer(limit=2 * self.flush_chunks)
        feeder = threading.Thread(
            target=self._feed, args=(items, buffer), name="indexer-chunker", daemon=True
        )
        feeder.start()
        try:
            while True:
                # Wait for one embedder batch, then take what else is chunked already: waiting
                # for a full call would leave the model idle while the first files are chunked.
                batch, size, done = [], 0, False
                while size < self.encode_chunks and (size < self.batch_size or buffer.ready()):
                    item = buffer.get()
                    if item is None:
                        done = True
                        break
                    batch.append(item)
                    size += len(item.chunks)
                texts = [c.text for p in batch for c in p.chunks]
                if texts:
                    started = time.perf_counter()
                    vectors = encode_passages(self.components.embed_model, texts)
                    self.seconds["encode"] += time.perf_counter() - started
                    at = 0
                    for p in batch:
                        p.vectors = vectors[at : at + len(p.chunks)]
                        at += len(p.chunks)
                yield from batch
                if done:
                    return
        finally:
            buffer.close()
            feeder.join()

    def close(self) -> None:
        pass

    # -- the chunking stage -----------------------------------------------------------------------

    def _feed(self, items: Sequence[WorkItem], buffer: _ChunkBuffer) -> None:
        try:
            for prepared in self._chunked(items, buffer):
                if not buffer.put(prepared):
                    return  # the consumer stopped
        except BaseException as exc:
            buffer.fail(exc)
            return
        buffer.finish()

    def _chunked(self, items: Sequence[WorkItem], buffer: _ChunkBuffer) -> Iterator[Prepared]:
        tokenizer_json = self.components.tokenizer_json
        if tokenizer_json is None or len(items) <= 1 or self.workers <= 0:
            from indexer.ingestion.chunking import make_splitter

            splitter = make_splitter(self.components.config.chunking, self.components.token_spans)
            for item in items:
                started = time.perf_counter()
                prepared = read_and_chunk(item, splitter, keyword_terms=self.keyword_terms)
                self.seconds["read_chunk"] += time.perf_counter() - started
                yield prepared
            return
        chunking = self.components.config.chunking.model_dump()
        with ProcessPoolExecutor(
            self.workers,
            mp_context=_worker_context(),
            initializer=_init_worker,
            initargs=(chunking, tokenizer_json, self.keyword_terms, os.getpid()),
        ) as pool:
            window: deque[Future[tuple[Prepared, float]]] = deque()
            pending = iter(items)
            exhausted = False
            while True:
                while not exhausted and len(window) < 2 * self.workers + 2 and not buffer.closed:
                    following = next(pending, None)
                    if following is None:
                        exhausted = True
                    else:
                        window.append(pool.submit(_chunk_in_worker, following))
                if not window:
                    return
                prepared, seconds = window.popleft().result()
                self.seconds["read_chunk"] += seconds
                yield prepared


class _ChunkBuffer:
    """A queue bounded by the chunks it holds (one item is always let in, however big)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[Prepared] = deque()
        self._chunks = 0
        self._finished = False
        self._error: BaseException | None = None
        self.closed = False
        self._cond = threading.Condition()

    def put(self, item: Prepared) -> bool:
        with self._cond:
            while self._items and self._chunks + len(item.chunks) > self.limit and not self.closed:
                self._cond.wait()
            if self.closed:
                return False
            self._items.append(item)
            self._chunks += len(item.chunks)
            self._cond.notify_all()
            return True

    def ready(self) -> bool:
        """Whether ``get`` would return at once."""
        with self._cond:
            return bool(self._items) or self._finished or self._error is not None

    def get(self) -> Prepared | None:
        """The next item, or ``None`` at the end; a failure of the producer is raised here."""
        with self._cond:
            while not self._items and not self._finished and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            if not self._items:
                return None
            item = self._items.popleft()
            self._chunks -= len(item.chunks)
            self._cond.notify_all()
            return item

    def finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self._cond:
            self._error = exc
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


# -- in the worker processes ------------------------------------------------------------------------

_splitter: Any = None
_keyword_terms = False


class _WorkerPopen(popen_forkserver.Popen):
    """Starts a worker without the parent's ``__main__``. Multiprocessing has each new process
    run the parent's script again (as ``__mp_main__``), so a script without an ``if __name__ ==
    "__main__":`` guard, such as the README's Python API example saved as a file, would start a
    build again in every worker, which fails there. The workers need only indexer's modules."""

    _launching = threading.Lock()

    def _launch(self, process_obj: Any) -> None:
        prepare = spawn.get_preparation_data

        def without_main(name: str) -> dict[str, Any]:
            data = prepare(name)
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
            return data

        # multiprocessing offers no option for this; its preparation data is made by this one
        # function, replaced only while this process is launched.
        with self._launching:
            spawn.get_preparation_data = without_main
            try:
                super()._launch(process_obj)  # type: ignore[misc]  # typeshed omits Popen._launch
            finally:
                spawn.get_preparation_data = prepare


class _WorkerProcess(multiprocessing.context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _WorkerPopen(process_obj)


class _WorkerContext(multiprocessing.context.ForkServerContext):
    Process = _WorkerProcess


@lru_cache(maxsize=1)
def _worker_context() -> Any:
    """Workers forked from a fork server that imported the chunking code once, so each starts in
    milliseconds: spawned ones spent seconds importing LlamaIndex each, and forking this process
    itself (torch's, Chroma's and the writer's threads running) deadlocked a worker on a lock
    another thread held at the fork. The server lives as long as this process, and the workers
    watch the build (``_exit_with``), so neither outlives a killed build."""
    context = _WorkerContext()
    context.set_forkserver_preload(["indexer.ingestion.local_engine", "indexer.ingestion.worker_preload"])
    return context


def _init_worker(chunking: dict[str, Any], tokenizer_json: str, keyword_terms: bool, build_pid: int) -> None:
    """Build the splitter once per worker, counting tokens with the embedding model's own
    tokenizer (its Rust half, without torch or the model's weights). NLTK's sentence splitter
    came loaded from the fork server (``worker_preload``)."""
    global _splitter, _keyword_terms
    _keyword_terms = keyword_terms
    threading.Thread(target=_exit_with, args=(build_pid,), name="indexer-orphan-check", daemon=True).start()
    from tokenizers import Tokenizer

    from indexer.config.models import ChunkingConfig
    from indexer.ingestion.chunking import make_splitter

    counter = Tokenizer.from_str(tokenizer_json)
    counter.no_truncation()
    counter.no_padding()
    _splitter = make_splitter(
        ChunkingConfig(**chunking), lambda text: counter.encode(text, add_special_tokens=False).offsets
    )


def _exit_with(build_pid: int) -> None:
    """End this worker once the build that started it is gone (SIGKILL included). A pool worker
    waits on a queue whose writing end it holds itself, and every fork-server child holds the
    server's lifeline, so without this a killed build would leave its workers and the fork server
    running for good."""
    while True:
        time.sleep(0.5)
        try:
            os.kill(build_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # the pid now belongs to another user's process: ours is gone
            os._exit(0)


def _chunk_in_worker(item: WorkItem) -> tuple[Prepared, float]:
    started = time.perf_counter()
    prepared = read_and_chunk(item, _splitter, keyword_terms=_keyword_terms)
    return prepared, time.perf_counter() - started
