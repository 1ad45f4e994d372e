"""The local build engine: files read and chunked by a pool of processes while a model embeds.

Three stages run at once, with bounded buffers between them, so the slowest sets the pace:

- reading and chunking: the tokenizer-driven splitter is CPU-bound Python, which threads would
  serialise on the GIL, so it runs in worker processes (``build.workers``), which on a GPU also
  turn each chunk into the model's token ids (``build.tokenize_in_workers``,
  ``embedding.PassageTokenizer``) so the encoder only runs the model;
- encoding: up to eight embedder batches per call (whatever is chunked once one batch is ready),
  so the model sorts them by length and keeps its batches full; in this process, or on CUDA in a
  process of its own with calls queued (``ingestion/encoders.py``);
- writing: the pipeline's writer thread (``ingestion/pipeline.py``) stores the previous flush while
  the next one encodes.

The read-ahead is counted in chunks: chunking may run up to ``2 × flush`` chunks ahead of the
encoder, whatever the documents' sizes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from indexer.cpu import cpu_count
from indexer.ingestion.build_processes import child_context, exit_with_build, start_child_server
from indexer.ingestion.encoders import (
    ModelFacts,
    Passages,
    SmallBuildEncoder,
    make_encoder,
    resolve_tokenize_in_workers,
)
from indexer.ingestion.prepare import Prepared, WorkItem, read_and_chunk
from indexer.ingestion.tables import embedding_text

if TYPE_CHECKING:
    from indexer.components import Components
    from indexer.components.embedding import PassageTokenizer
    from indexer.index.store import Chunk
    from indexer.ingestion.chunk_ahead import ChunkedAhead

log = logging.getLogger(__name__)

_ENCODE_BATCHES = 8
# How often a wait for the chunking workers looks whether the build has stopped.
_POLL_SECONDS = 0.1


def resolve_workers(workers: int | str) -> int:
    """``build.workers``: ``auto`` leaves one core to the encoder, and uses at least one."""
    if isinstance(workers, int):
        return workers
    return max(1, cpu_count() - 1)


class LocalEngine:
    def __init__(
        self, components: Components, *, flush_chunks: int, ahead: ChunkedAhead | None = None
    ) -> None:
        self.components = components
        self.ahead = ahead  # a child chunking this build's files already (``chunk_ahead.py``)
        self.flush_chunks = flush_chunks
        # Chunks per encode call: enough batches for length sorting to keep padding low, few
        # enough that encoding starts while the first files are still being chunked.
        self.batch_size = components.config.embedding.batch_size
        self.encode_chunks = min(flush_chunks, _ENCODE_BATCHES * self.batch_size)
        self.workers = resolve_workers(components.config.build.workers)
        # An embedded index keeps a keyword index (index/keyword.py): its terms are made here.
        self.keyword_terms = components.config.vector_store.persist_dir is not None
        self.seconds: defaultdict[str, float] = defaultdict(float)  # busy time per stage: read_chunk, encode
        self.tokenize_in_workers, _ = resolve_tokenize_in_workers(components.config)
        self.encoder = make_encoder(components)

    def prepare(self, items: Sequence[WorkItem]) -> Iterator[Prepared]:
        encoder = self.encoder
        if self._uses_workers(items) and self.ahead is None:
            start_child_server()
        facts = encoder.facts()
        _warn_if_truncating(self.components.config.chunking.chunk_size, facts.max_tokens)
        if self.ahead is not None and isinstance(encoder, SmallBuildEncoder):
            encoder.direct.load()  # while the child still chunks: off the way after it
        buffer = _ChunkBuffer(limit=2 * self.flush_chunks)
        feeder = threading.Thread(
            target=self._feed,
            args=(items, buffer, facts),
            name="indexer-chunker",
            daemon=True,
        )
        feeder.start()
        submitted: deque[list[Prepared]] = deque()
        done = False
        try:
            while not done or submitted:
                if not done:
                    batch, done = self._next_call(buffer)
                    chunks = [c for p in batch for c in p.chunks]
                    if chunks:
                        encoder.submit(_passages(chunks))
                        submitted.append(batch)
                    else:
                        yield from batch  # unreadable files only: nothing to embed
                # The oldest call's result, once the encoder has its next call to work on (or
                # nothing more is coming), so an encoder of its own never waits for this process.
                while submitted and (len(submitted) > encoder.ahead or done):
                    batch = submitted.popleft()
                    vectors, seconds = encoder.result()
                    self.seconds["encode"] += seconds
                    at = 0
                    for p in batch:
                        p.vectors = vectors[at : at + len(p.chunks)]
                        at += len(p.chunks)
                    yield from batch
        finally:
            buffer.close()
            feeder.join()

    def _next_call(self, buffer: _ChunkBuffer) -> tuple[list[Prepared], bool]:
        """One encode call's files, and whether chunking has finished. Waits for one embedder
        batch, then takes what else is chunked already: waiting for a full call would leave the
        model idle while the first files are chunked."""
        batch: list[Prepared] = []
        size = 0
        while size < self.encode_chunks and (size < self.batch_size or buffer.ready()):
            item = buffer.get()
            if item is None:
                return batch, True
            batch.append(item)
            size += len(item.chunks)
        return batch, False

    def close(self) -> None:
        self.encoder.close()

    def _uses_workers(self, items: Sequence[WorkItem]) -> bool:
        return len(items) > 1 and self.workers > 0

    # -- the chunking stage -----------------------------------------------------------------------

    def _feed(self, items: Sequence[WorkItem], buffer: _ChunkBuffer, facts: ModelFacts) -> None:
        try:
            for prepared in self._chunked(items, buffer, facts):
                if not buffer.put(prepared):
                    return  # the consumer stopped
        except BaseException as exc:
            buffer.fail(exc)
            return
        buffer.finish()

    def _chunked(
        self, items: Sequence[WorkItem], buffer: _ChunkBuffer, facts: ModelFacts
    ) -> Iterator[Prepared]:
        tokenizer_json = facts.tokenizer_json
        if self.ahead is not None:
            started = time.perf_counter()
            ahead, self.ahead = self.ahead, None
            done = ahead.take(items, tokenizer_json)
            if done is not None:
                self.seconds["read_chunk"] += time.perf_counter() - started  # what this process waited
                yield from done
                return
        if tokenizer_json is None or not self._uses_workers(items):
            from indexer.ingestion.chunking import make_splitter

            splitter = make_splitter(
                self.components.config.chunking,
                tokenizer_json if tokenizer_json is not None else self.components.embedder.token_spans,
            )
            for item in items:
                started = time.perf_counter()
                prepared = read_and_chunk(item, splitter, keyword_terms=self.keyword_terms)
                self.seconds["read_chunk"] += time.perf_counter() - started
                yield prepared
            return
        chunking = self.components.config.chunking.model_dump()
        passage_tokenizer = facts.passage_tokenizer if self.tokenize_in_workers else None
        pool = ProcessPoolExecutor(
            self.workers,
            mp_context=child_context(),
            initializer=_init_worker,
            initargs=(chunking, tokenizer_json, self.keyword_terms, passage_tokenizer, os.getpid()),
        )
        try:
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
                # Waited for in turns, so a build that stops (Ctrl-C, a failure) is not held up
                # by a large file being chunked.
                while not buffer.closed and not wait([window[0]], timeout=_POLL_SECONDS).done:
                    pass
                if buffer.closed:
                    return
                prepared, seconds = window.popleft().result()
                self.seconds["read_chunk"] += seconds
                yield prepared
        finally:
            # A build that stopped early drops the files queued, and leaves the files being
            # chunked to the workers, who end after them (or with the build, ``exit_with_build``).
            pool.shutdown(wait=not buffer.closed, cancel_futures=True)


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
_passage_tokenizer: PassageTokenizer | None = None


def _init_worker(
    chunking: dict[str, Any],
    tokenizer_json: str,
    keyword_terms: bool,
    passage_tokenizer: PassageTokenizer | None,
    build_pid: int,
) -> None:
    """Build the splitter once per worker, counting tokens with the embedding model's own
    tokenizer (its Rust half, without torch or the model's weights). NLTK's sentence splitter
    came loaded from the fork server (``worker_preload``)."""
    global _splitter, _keyword_terms, _passage_tokenizer
    _keyword_terms = keyword_terms
    _passage_tokenizer = passage_tokenizer
    exit_with_build(build_pid)
    from indexer.config.models import ChunkingConfig
    from indexer.ingestion.chunking import make_splitter

    _splitter = make_splitter(ChunkingConfig(**chunking), tokenizer_json)


def _chunk_in_worker(item: WorkItem) -> tuple[Prepared, float]:
    started = time.perf_counter()
    prepared = read_and_chunk(item, _splitter, keyword_terms=_keyword_terms, tokenizer=_passage_tokenizer)
    return prepared, time.perf_counter() - started


def _passages(chunks: list[Chunk]) -> Passages:
    """What the encoder is handed for ``chunks``: their token ids where the chunking workers made
    them all (dropped here: they are not needed again), else their texts."""
    ids = [c.token_ids for c in chunks]
    for chunk in chunks:
        chunk.token_ids = None
    return ids if all(i is not None for i in ids) else [embedding_text(c.text) for c in chunks]


def _warn_if_truncating(chunk_size: int, max_tokens: int) -> None:
    if max_tokens and chunk_size > max_tokens:
        log.warning(
            "chunking.chunk_size %d exceeds the embedding model's input of %d tokens: the end of "
            "each chunk will not be embedded",
            chunk_size,
            max_tokens,
        )
