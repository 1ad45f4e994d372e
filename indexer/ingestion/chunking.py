"""Split documents into chunks with LlamaIndex's SentenceSplitter, and attach citation metadata.

``chunk_size`` counts tokens of the embedding model's own tokenizer: a chunk then fits the model's
input exactly, where LlamaIndex's default (a GPT tokenizer) over- or under-fills it.

Bounded on any input: a chunk holds at most ``chunk_size`` tokens, counted as below (every
``MAX_CHARS_PER_TOKEN`` characters of a token and the space after it count one), and so at most
``chunk_size * MAX_CHARS_PER_TOKEN`` characters. The splitter's slack: a chunk is measured as the
sum of the pieces it was merged from, and joining two pieces can tokenize their seam differently
(a word cut by ``cut_by_tokens``), so the count of a chunk's whole text can differ from the sum by
about one token per seam. Text with no separator at all (a 50 MB single word, base64, CJK without
punctuation) is cut by tokens instead of LlamaIndex's last resort, one piece per character.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import Document, TextNode

from indexer.components.embedding.tokenizer import token_counter, token_spans_by
from indexer.config.models import ChunkingConfig
from indexer.index.store import CHUNK_INDEX, DOC_ID, FILE_HASH, Chunk
from indexer.ingestion.ocr import OCR_PAGES
from indexer.ingestion.punkt import import_nltk
from indexer.ingestion.readers import HEADINGS, PAGES
from indexer.ingestion.table_chunks import split_with_tables
from indexer.labels import same_label

# A tokenizer may give one token to a whole run of characters: wordpiece (MiniLM, BERT) turns any
# word over 100 characters into a single [UNK], so a 50 MB word would "fit" in one chunk, and it
# gives none to whitespace, so a megabyte of spaces would too. Counted here, a token with the text
# up to the next token covers at most this many characters; the rest counts as more tokens.
# (Wordpiece tokens are far shorter, so ordinary text counts exactly as the model sees it.)
MAX_CHARS_PER_TOKEN = 16
# Long texts are counted window by window, stopping once over the limit: the splitter only needs to
# know that a whole document is too big, and encoding 50 MB at once would cost gigabytes of offsets.
_COUNT_WINDOW = 8192

Spans = Callable[[str], Sequence[tuple[int, int]]]
"""A text's tokens as (start, end) character offsets, without special tokens."""


def _segments(text: str, spans: Spans) -> Iterator[tuple[int, int]]:
    """The text cut at every token's start: each piece is a token and what follows it, so the
    pieces cover the whole text (whitespace included)."""
    starts = [start for start, _ in spans(text) if start > 0]
    bounds = [0, *starts, len(text)]
    for a, b in itertools.pairwise(bounds):
        if b > a:
            yield a, b


def token_count(spans: Spans, text: str, limit: int | None = None) -> int:
    """Tokens of ``text`` as chunks count them; above ``limit``, some number above it."""
    total = 0
    for at in range(0, len(text), _COUNT_WINDOW):
        total += sum(_cost(b - a) for a, b in _segments(text[at : at + _COUNT_WINDOW], spans))
        if limit is not None and total > limit:
            return total
    return total


class PieceCounter:
    """``token_count`` for a splitter, tokenizing each text once. The splitter asks about a whole
    text first and then about its pieces (sentences, clauses), in order; the whole text's token
    starts are kept, so a piece is counted from them by bisection instead of being tokenized again,
    which halves the tokenizer's work and most of the counting. A piece is counted exactly as it
    would be alone wherever it is cut between tokens the tokenizer would also split there (at
    whitespace and punctuation, as the splitter cuts). One per splitter, used by one thread."""

    # Texts up to this length are tokenized whole and kept; longer ones are counted window by window
    # (``token_count``) and their pieces are kept instead.
    KEEP_CHARS = 1 << 16

    def __init__(self, spans: Spans, limit: int) -> None:
        self.spans = spans
        self.limit = limit
        self._text = ""
        self._starts: list[int] = []  # where each of the kept text's pieces (as in _segments) starts
        self._cost_before: list[int] | None = None  # cost of the pieces before each; None: 1 each
        self._cursor = 0

    def __call__(self, text: str) -> int:
        if not text:
            return 0
        at = self._text.find(text, self._cursor) if len(text) < len(self._text) else -1
        if at < 0:
            if len(text) > self.KEEP_CHARS:
                return token_count(self.spans, text, self.limit)
            self._keep(text)
            at = 0
        self._cursor = at
        return self._count(at, at + len(text))

    def _keep(self, text: str) -> None:
        pieces = list(_segments(text, self.spans))
        self._text, self._starts, self._cursor = text, [a for a, _ in pieces], 0
        lengths = [b - a for a, b in pieces]
        if max(lengths) <= MAX_CHARS_PER_TOKEN:  # ordinary text: each piece costs one
            self._cost_before = None
        else:
            self._cost_before = list(itertools.accumulate(map(_cost, lengths), initial=0))

    def _count(self, start: int, end: int) -> int:
        starts = self._starts
        first = bisect.bisect_right(starts, start)  # the first piece starting inside the range
        last = bisect.bisect_left(starts, end) - 1  # the last one
        if first > last:
            return _cost(end - start)
        costs = self._cost_before
        between = last - first if costs is None else costs[last] - costs[first]
        return _cost(starts[first] - start) + between + _cost(end - starts[last])


def _cost(length: int) -> int:
    """Tokens a piece of text counts as: one per ``MAX_CHARS_PER_TOKEN`` characters begun."""
    return max(1, -(-length // MAX_CHARS_PER_TOKEN))


def cut_by_tokens(text: str, spans: Spans, limit: int) -> list[str]:
    """Pieces of at most ``limit`` tokens each, cut where a token starts (inside one only when it
    alone is over the budget left). Text longer than ``limit`` tokens gives two pieces or more, so
    the splitter's recursion always ends."""
    pieces: list[str] = []
    window = limit * MAX_CHARS_PER_TOKEN
    at = 0
    while at < len(text):
        part = text[at : at + window]
        budget, cut = limit, len(part)
        for a, b in _segments(part, spans):
            cost = _cost(b - a)
            if cost > budget:
                cut = a + budget * MAX_CHARS_PER_TOKEN  # its first characters, as many as fit
                break
            budget -= cost
        cut = max(1, cut)
        pieces.append(part[:cut])
        at += cut
    return pieces


def make_splitter(config: ChunkingConfig, tokens: Spans | str) -> SentenceSplitter:
    """The splitter of every build, record sync and question draft: a SentenceSplitter counting the
    embedding model's tokens, whose last resort cuts by tokens. ``tokens`` is the tokenizer's
    ``token_spans``, or the tokenizer serialised as JSON (``Embedder.tokenizer_json``), rebuilt
    here without torch or the model's weights, as a chunking worker does."""
    import_nltk()  # for the splitter's Punkt, without the toolkit's SciPy and scikit-learn (1.3 s)
    spans = token_spans_by(token_counter(tokens)) if isinstance(tokens, str) else tokens
    limit = config.chunk_size
    counter = PieceCounter(spans, limit)

    def count(text: str) -> Sequence[Any]:
        return range(counter(text))  # the splitter only takes its len()

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


# A document's metadata that each of its chunks carries (``ocr``: read by OCR, ``ingestion/ocr.py``).
_FROM_DOCUMENT = ("title", "page", "section", "ocr", "ocr_confidence")


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
        # Markdown tables are kept whole or split between rows under their header (table_chunks.py).
        for node in split_with_tables(splitter, doc.text):
            assert isinstance(node, TextNode)  # a text splitter makes text nodes
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
                **{k: v for k, v in doc.metadata.items() if k in _FROM_DOCUMENT},
                **section,
                **_page_span(doc.metadata.get(PAGES), node.start_char_idx, node.end_char_idx),
            }
            metadata.update(_ocr_of_pages(doc.metadata.get(OCR_PAGES), metadata))
            # A section that is the title again (a Markdown file's "# Title", a page's h1) is no
            # section: its citation would read "Title, Title".
            if same_label(metadata.get("section"), metadata.get("title")):
                del metadata["section"]
            chunks.append(Chunk(id=f"{doc_id}::{file_hash[:12]}::{index}", text=node.text, metadata=metadata))
    return chunks


def _page_span(pages: Sequence[tuple[int, int]] | None, start: int | None, end: int | None) -> dict[str, int]:
    """``page`` (where the chunk starts) and ``page_end`` (where it ends) of a document whose
    ``pages`` metadata gives each page's start: ``(char offset, page number)`` pairs, in order."""
    if not pages or start is None:
        return {}
    starts = [offset for offset, _ in pages]
    first = max(bisect.bisect_right(starts, start) - 1, 0)
    last = max(bisect.bisect_right(starts, max(start, (end if end is not None else start) - 1)) - 1, first)
    return {"page": pages[first][1], "page_end": pages[last][1]}


def _ocr_of_pages(ocr_pages: Sequence[tuple[int, float]] | None, metadata: dict[str, Any]) -> dict[str, Any]:
    """``ocr`` and the mean ``ocr_confidence`` of a PDF chunk over pages OCR read (``ocr_pages``
    metadata: ``(page, confidence)`` pairs); nothing for a chunk only over text-layer pages."""
    if not ocr_pages or "page" not in metadata:
        return {}
    first, last = metadata["page"], metadata.get("page_end", metadata["page"])
    read = [confidence for page, confidence in ocr_pages if first <= page <= last]
    return {"ocr": True, "ocr_confidence": round(sum(read) / len(read), 3)} if read else {}
