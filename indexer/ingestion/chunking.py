"""Split documents into chunks with LlamaIndex's SentenceSplitter, and attach citation metadata.

``chunk_size`` counts tokens of the embedding model's own tokenizer: a chunk then fits the model's
input exactly, where LlamaIndex's default (a GPT tokenizer) over- or under-fills it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import Document

from indexer.config.models import ChunkingConfig
from indexer.index.store import CHUNK_INDEX, DOC_ID, FILE_HASH, Chunk
from indexer.ingestion.readers import HEADINGS


def make_splitter(
    config: ChunkingConfig, tokenize: Callable[[str], Sequence[Any]] | None
) -> SentenceSplitter:
    return SentenceSplitter(
        chunk_size=config.chunk_size,
        chunk_overlap=config.chunk_overlap,
        tokenizer=tokenize,
        include_metadata=False,
        include_prev_next_rel=False,
    )


def chunk_document(
    splitter: SentenceSplitter, docs: Sequence[Document], *, doc_id: str, file_hash: str
) -> list[Chunk]:
    """Chunks of one file (its documents are pages or a single text), with ids that are unique per
    version of the file, so a new version can be written before the old one is removed."""
    chunks: list[Chunk] = []
    file_name = doc_id.rsplit("/", 1)[-1]
    for doc in docs:
        headings: list[tuple[int, str]] = doc.metadata.get(HEADINGS) or []
        heading_starts = [offset for offset, _ in headings]
        for node in splitter.get_nodes_from_documents([Document(text=doc.text)]):
            index = len(chunks)
            section = {}
            if headings and node.start_char_idx is not None:
                at = bisect.bisect_right(heading_starts, node.start_char_idx) - 1
                if at >= 0:
                    section = {"section": headings[at][1]}
            metadata: dict[str, Any] = {
                DOC_ID: doc_id,
                "file": doc_id,
                "file_name": file_name,
                FILE_HASH: file_hash,
                CHUNK_INDEX: index,
                "start_char": node.start_char_idx,
                "end_char": node.end_char_idx,
                **{k: v for k, v in doc.metadata.items() if k in ("title", "page", "section")},
                **section,
            }
            chunks.append(Chunk(id=f"{doc_id}::{file_hash[:12]}::{index}", text=node.text, metadata=metadata))
    return chunks
