"""Chunks of a document whose text holds Markdown tables (``tables.markdown_table``): a table is
never cut inside a row, and a table too long for one chunk is split between rows, each piece led by
the table's header row and its ``|---|`` line, so every chunk can be read on its own.

- A table that fits in ``chunk_size`` tokens (as the splitter counts them) stays whole in one chunk;
  it shares that chunk with the text just before or after it when both fit, so a caption or an
  introducing sentence stays with its table.
- A longer table is split between rows. A row that alone exceeds what a chunk holds beside the
  header is cut between words (and a word longer than that between characters), bounded like any
  text; a header over half a chunk is not repeated (its table is split between rows alone).
- Text between tables is chunked by the splitter as before; a document without a table goes to the
  splitter untouched.

``start_char``/``end_char`` stay the offsets of the chunk's own text in the document: for a piece
after the first of a split table they span its rows only, and its text is the header lines followed
by ``document[start:end]``; for every other chunk the text is ``document[start:end]`` (as the
splitter gives it, whitespace at its ends trimmed). Nothing downstream reads a chunk back out of the
document by these offsets: citations show them, and retrieval compares them to tell overlapping
chunks apart, which the pieces of a split table are not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import Document, TextNode

# A header line, the |---| line under it, and every following line that is a table row. Our tables
# come from tables.markdown_table, whose lines start and end with a pipe.
_TABLE_RE = re.compile(
    r"^\|[^\n]*\|[ \t]*\n\|(?:[ \t]*:?-{3,}:?[ \t]*\|)+[ \t]*(?:\n\|[^\n]*\|[ \t]*)*$",
    re.MULTILINE,
)
_WORD_RE = re.compile(r"\S+\s*")


@dataclass
class _Piece:
    start: int
    end: int
    text: str
    sliced: bool  # text is document[start:end]: may be merged with a neighbour
    table: bool


def split_with_tables(splitter: SentenceSplitter, text: str) -> list[TextNode]:
    """The chunks of ``text`` as the splitter makes them, with its Markdown tables kept whole or
    split between rows under a repeated header (see the module's docstring)."""
    tables = [m.span() for m in _TABLE_RE.finditer(text)] if "|---" in text else []
    if not tables:
        return list(_text_nodes(splitter, text))
    count: Callable[[str], int] = splitter._token_size
    limit = splitter.chunk_size
    pieces: list[_Piece] = []
    at = 0
    for start, end in tables:
        pieces += _text_pieces(splitter, text, at, start)
        pieces += _table_pieces(splitter, text, start, end, count, limit)
        at = end
    pieces += _text_pieces(splitter, text, at, len(text))
    return [
        TextNode(text=p.text, start_char_idx=p.start, end_char_idx=p.end)
        for p in _merge(pieces, text, count, limit)
    ]


def _text_nodes(splitter: SentenceSplitter, text: str) -> list[TextNode]:
    nodes = splitter.get_nodes_from_documents([Document(text=text)])
    return [node for node in nodes if isinstance(node, TextNode)]


def _text_pieces(splitter: SentenceSplitter, text: str, start: int, end: int) -> list[_Piece]:
    segment = text[start:end]
    if not segment.strip():
        return []
    pieces = []
    for node in _text_nodes(splitter, segment):
        if node.start_char_idx is None or node.end_char_idx is None:  # not found back: never merged
            pieces.append(_Piece(start, end, node.text, sliced=False, table=False))
        else:
            a, b = start + node.start_char_idx, start + node.end_char_idx
            pieces.append(_Piece(a, b, node.text, sliced=text[a:b] == node.text, table=False))
    return pieces


def _table_pieces(
    splitter: SentenceSplitter, text: str, start: int, end: int, count: Callable[[str], int], limit: int
) -> list[_Piece]:
    table = text[start:end]
    if count(table) <= limit:
        return [_Piece(start, end, table, sliced=True, table=True)]
    lines = table.split("\n")
    header = "\n".join(lines[:2])
    header_cost = count(header)
    lead = header + "\n"
    if header_cost > limit // 2:  # too wide to repeat: its lines are the first rows, and lead nothing
        lines, lead, header_cost = ["", "", *lines], "", 0
    budget = limit - header_cost
    pieces: list[_Piece] = []
    rows: list[tuple[int, int]] = []  # the rows of the piece being filled, as document offsets
    cost = 0

    def flush() -> None:
        nonlocal rows, cost
        if rows:
            a, b = rows[0][0], rows[-1][1]
            pieces.append(_Piece(a, b, lead + text[a:b], sliced=not lead, table=True))
        rows, cost = [], 0

    at = start + len(lead)
    for line in lines[2:]:
        row = (at, at + len(line))
        at += len(line) + 1
        row_cost = count(line)
        if row_cost > budget:
            flush()
            for a, b in _cut_row(text, row, count, budget):
                pieces.append(_Piece(a, b, lead + text[a:b], sliced=not lead, table=True))
            continue
        if cost + row_cost > budget:
            flush()
        rows.append(row)
        cost += row_cost
    flush()
    # The first piece starts at the table's own header, so it is a slice of the document.
    first = pieces[0]
    if first.text == text[start : first.end]:
        pieces[0] = _Piece(start, first.end, first.text, sliced=True, table=True)
    return pieces


def _cut_row(
    text: str, row: tuple[int, int], count: Callable[[str], int], budget: int
) -> list[tuple[int, int]]:
    """A row too long for a chunk, cut between words into parts of at most ``budget`` tokens; a
    word longer than that is cut every ``budget`` characters (no token is shorter than one)."""
    parts: list[tuple[int, int]] = []
    begin, cost = row[0], 0
    for match in _WORD_RE.finditer(text, row[0], row[1]):
        a, b = match.span()
        word_cost = count(text[a:b])
        if cost + word_cost <= budget:
            cost += word_cost
            continue
        if a > begin:
            parts.append((begin, a))
        begin, cost = a, word_cost
        if word_cost > budget:
            for at in range(a, b, budget):
                parts.append((at, min(at + budget, b)))
            begin, cost = b, 0
    if begin < row[1]:
        parts.append((begin, row[1]))
    return parts


def _merge(pieces: list[_Piece], text: str, count: Callable[[str], int], limit: int) -> list[_Piece]:
    """Join a whole table with the chunk of text beside it where both fit in one chunk; text beside
    text stays as the splitter cut it."""
    merged: list[_Piece] = []
    for piece in pieces:
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.sliced
            and piece.sliced
            and (last.table or piece.table)
            and piece.start >= last.start
            and count(text[last.start : max(last.end, piece.end)]) <= limit
        ):
            end = max(last.end, piece.end)
            merged[-1] = _Piece(last.start, end, text[last.start : end], sliced=True, table=True)
        else:
            merged.append(piece)
    return merged
