"""Split documents into chunks with LlamaIndex's SentenceSplitter, and attach citation metadata.

``chunk_size`` counts tokens of the embedding model's own tokenizer: a chunk then fits the model's
input exactly, where LlamaIndex's default (a GPT tokenizer) over- or under-fills it.

Bounded on any input: a chunk holds at most ``chunk_size`` tokens, counted as below, and so at most
``chunk_size * MAX_CHARS_PER_TOKEN`` characters. The splitter's slack: a chunk is measured as the
sum of the pieces it was merged from, and joining two pieces can tokenize their seam differently
(a word cut by ``cut_by_tokens``), so the count of a chunk's whole text can differ from the sum by
about one token per seam. Text with no separator at all (a 50 MB single word, base64, CJK without
punctuation) is cut by tokens instead of LlamaIndex's last resort, one piece per character.
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

# A tokenizer may give one token to a whole run of characters: wordpiece (MiniLM, BERT) turns any
# word over 100 characters into a single [UNK], so a 50 MB word would "fit" in one chunk. Counted
# here, a token covers at most this many characters and the rest of its span counts as more tokens
# (real wordpiece tokens are far shorter, so ordinary text counts exactly as the model sees it).
MAX_CHARS_PER_TOKEN = 16
# Long texts are counted window by window, stopping once over the limit: the splitter only needs to
# know that a whole document is too big, and encoding 50 MB at once would cost gigabytes of offsets.
_COUNT_WINDOW = 8192

Spans = Callable[[str], Sequence[tuple[int, int]]]
"""A text's tokens as (start, end) character offsets, without special tokens."""


def _cost(start: int, end: int) -> int:
    return max(1, -(-(end - start) // MAX_CHARS_PER_TOKEN))


def token_count(spans: Spans, text: str, limit: int | None = None) -> int:
    """Tokens of ``text`` as chunks count them; above ``limit``, some number above it."""
    total = 0
    for start in range(0, len(text), _COUNT_WINDOW):
        total += sum(_cost(s, e) for s, e in spans(text[start : start + _COUNT_WINDOW]))
        if limit is not None and total > limit:
            return total
    return total


def cut_by_tokens(text: str, spans: Spans, limit: int) -> list[str]:
    """Pieces of at most ``limit`` tokens each, cut at token boundaries (inside a token only when
    one token alone is over the limit). Text longer than ``limit`` tokens gives two pieces or more,
    so the splitter's recursion always ends."""
    pieces: list[str] = []
    window = limit * MAX_CHARS_PER_TOKEN
    at = 0
    while at < len(text):
        part = text[at : at + window]
        budget, cut = limit, len(part)
        for start, end in spans(part):
            cost = _cost(start, end)
            if cost > budget:
                cut = start if start > 0 else budget * MAX_CHARS_PER_TOKEN
                if budget > 0 and end - start > budget * MAX_CHARS_PER_TOKEN:
                    cut = start + budget * MAX_CHARS_PER_TOKEN  # one long token: cut it
                break
            budget -= cost
        cut = max(1, cut)
        pieces.append(part[:cut])
        at += cut
    return pieces


def make_splitter(config: ChunkingConfig, spans: Spans) -> SentenceSplitter:
    """A SentenceSplitter counting ``spans``' tokens, whose last resort cuts by tokens."""
    limit = config.chunk_size

    def count(text: str) -> Sequence[Any]:
        return range(token_count(spans, text, limit))  # the splitter only takes its len()

    splitter = SentenceSplitter(
        chunk_size=config.chunk_size,
        chunk_overlap=config.chunk_overlap,
        tokenizer=count,
        include_metadata=False,
        include_prev_next_rel=False,
    )
    # LlamaIndex's last resort splits into single characters, each then tokenized on its own: for a
    # 50 MB word, tens of millions of calls. Cutting by tokens gives pieces that already fit.
    splitter._sub_sentence_split_fns[-1] = lambda text: cut_by_tokens(text, spans, limit)
    return splitter


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
