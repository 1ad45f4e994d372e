"""A cold build of a few changed files: the files read and chunked in a forked child, from before
this process opens the index.

A cold ``indexer build`` after one edit is almost all imports: LlamaIndex's ``SentenceSplitter``
and NLTK's Punkt for the chunking (about 1.1 s of CPU: ``llama_index.core``'s ``__init__`` loads
its indices, chat engines, SQLAlchemy and workflows, none of them optional), and Chroma and
onnxruntime for the index and the embedding (about 0.6 s). Threads would run them one after the
other under the GIL. So the build plans first (the manifest and the files' hashes: milliseconds
on a small folder), and where its work is a few small files (a build on the torch-free ONNX
route), a child forked then imports the chunking, reads and chunks the files and makes each
chunk's Chroma record, while this process opens the index and loads the model. This process then
never imports LlamaIndex, and no chunking workers start (their fork server imports the chunking
anew: two edited files took 3.0 to 3.3 s where one took 1.4).

Only a help: the chunks are the ones this process would make (the same code and tokenizer, which
``take`` checks), and where anything differs (the plan once the writer holds the lock, the
tokenizer) or the child fails, this process chunks the files itself, as without a child.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from indexer.forked import ForkedCall, can_fork

if TYPE_CHECKING:
    from indexer.config.models import Config
    from indexer.index.index import Index
    from indexer.ingestion.prepare import Prepared, WorkItem
    from indexer.ingestion.sources import Discovery

# Hashing every file twice (here, and again once the writer holds the lock) costs little only on a
# small folder, which is where a cold build's imports are most of its time.
_MAX_FOLDER_BYTES = 16 << 20
# A few small files, chunked one after the other in the child: the size of a build on the ONNX
# route (``build.onnx_max_chunks``, 64 chunks of about a kilobyte). Larger builds go to the
# chunking workers, which hand each file to the encoder as soon as it is chunked.
_MAX_FILES = 16
_MAX_FILES_BYTES = 256 << 10


class ChunkedAhead:
    """The child chunking ``items``; ``take`` hands over its work when it is what is asked."""

    def __init__(self, items: list[WorkItem], call: ForkedCall) -> None:
        self.items = items
        self._call = call

    def take(self, items: Sequence[WorkItem], tokenizer_json: str | None) -> list[Prepared] | None:
        """The files chunked by the child, if they are ``items`` and were counted with this
        tokenizer; else None (the caller chunks them). The child ends here either way."""
        try:
            if list(items) != self.items or tokenizer_json is None:
                return None
            result = self._call.result()
            if result is None:
                return None
            digest, prepared = result
            return prepared if digest == _digest(tokenizer_json) else None
        finally:
            self.close()

    def close(self) -> None:
        self._call.close()


def chunk_ahead(config: Config, index: Index, discovery: Discovery) -> ChunkedAhead | None:
    """A child chunking what this build will, where that is a few small files and this process is
    cold; else None."""
    if not can_fork() or config.build.engine != "local" or config.vector_store.persist_dir is None:
        return None
    if sum(source.size for source in discovery.sources) > _MAX_FOLDER_BYTES:
        return None
    from indexer.ingestion.plan import plan_sync, work_items

    try:
        items = work_items(config, plan_sync(config, discovery, index.manifest_file.load()))
    except Exception:  # a damaged manifest, say: the build plans again and reports it as always
        return None
    if not items or len(items) > _MAX_FILES or sum(item.size for item in items) > _MAX_FILES_BYTES:
        return None  # nothing to chunk, or the chunking workers' case
    try:
        call = ForkedCall(lambda: _chunk(config, items))
    except OSError:
        return None
    return ChunkedAhead(items, call)


def _chunk(config: Config, items: list[WorkItem]) -> tuple[str, list[Prepared]] | None:
    """In the child: ``items`` read and chunked as ``LocalEngine`` would in its own process, with
    each chunk's Chroma record made too."""
    from indexer.index.store import node_record
    from indexer.ingestion.chunking import make_splitter
    from indexer.ingestion.encoders import direct_route
    from indexer.ingestion.prepare import read_and_chunk

    direct = direct_route(config)
    if direct is None:  # the torch route counts tokens with a tokenizer only torch's model gives
        return None
    splitter = make_splitter(config.chunking, direct.tokenizer_json)
    with_document = config.vector_store.store_documents
    prepared = [read_and_chunk(item, splitter, keyword_terms=True) for item in items]
    for chunk in (c for p in prepared for c in p.chunks):
        chunk.record = (with_document, node_record(chunk, with_document=with_document)[1])
    return _digest(direct.tokenizer_json), prepared


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
