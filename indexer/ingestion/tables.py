"""Tables as Markdown text: the one shape every reader gives a table in, so a chunk keeps each row on
one line with its cells in order, and the header names the columns (GitHub's pipe-table syntax,
which the models and the web page both read)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_SPACE_RE = re.compile(r"\s+")


def table_cell(value: object) -> str:
    """One cell as pipe-table text: on one line, its own pipes escaped, ``None`` empty."""
    if value is None:
        return ""
    text = _SPACE_RE.sub(" ", str(value)).strip()
    return text.replace("|", "\\|")


def markdown_table(rows: Iterable[Sequence[object]]) -> str:
    """The rows as a Markdown table whose first row is the header; rows are padded to the widest
    one, and rows and trailing columns with no text at all are left out. Empty when no cell has
    text."""
    cells = [[table_cell(value) for value in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return ""
    width = max(max((i + 1 for i, cell in enumerate(row) if cell), default=0) for row in cells)
    cells = [(row + [""] * width)[:width] for row in cells]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * width)
    return "\n".join(lines)


_ROW_RE = re.compile(r"^\|(.*)\|[ \t]*$")
_RULE_RE = re.compile(r"^\|(?:[ \t]*:?-+:?[ \t]*\|)+[ \t]*$")
_CELL_SPLIT_RE = re.compile(r"(?<!\\)\|")


def embedding_text(text: str) -> str:
    """What the embedder is given for a chunk: its text with the pipe-table syntax taken out (cells
    side by side, the ``|---|`` rule dropped); the stored text keeps its Markdown table. MiniLM
    spends a token on every pipe, and a table's vector drifts away from questions about its rows:
    on the sample's error-code table and "What does error E-214 mean?", cosine 0.27 as a pipe
    table, 0.34 as the CSV's own lines, 0.37 without the pipes. Text with no table line is
    returned as it is."""
    if not text.startswith("|") and "\n|" not in text:
        return text
    lines = []
    for line in text.split("\n"):
        row = _ROW_RE.match(line)
        if row is None:
            lines.append(line)
        elif not _RULE_RE.match(line):
            cells = (cell.strip().replace("\\|", "|") for cell in _CELL_SPLIT_RE.split(row.group(1)))
            lines.append("  ".join(cell for cell in cells if cell))
    return "\n".join(lines)
