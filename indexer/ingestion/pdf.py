"""PDF text with its tables as Markdown tables, as ONE document whose ``pages`` metadata gives each
page's start in the text (``(char offset, page number)`` pairs, like ``headings``), so every chunk
knows the page it starts on and the page it ends on (``chunking.chunk_document``).

pdfplumber (pdfminer.six underneath) rather than pypdf, measured on the public PDFs of
``shared/data/mixed_docs_unstructured`` and on PDFs written with fpdf2 from known text:
- it finds ruled tables and their cells (``find_tables``), and gives every character's box, so a
  table's cells are left out of the running text and the table is put back where it stands on the
  page; pypdf has no tables at all and prints a table as loose words;
- with ``use_text_flow`` it follows the content stream as pypdf does (two-column papers stay in
  column order; pdfplumber's default reads straight across both columns), and with
  ``x_tolerance_ratio`` word gaps scale with the font, where a fixed 3 pt tolerance glued the
  words of tightly set papers together ("Theplotofinhibitor...");
- it costs more CPU (pure Python): 180 ms a page against pypdf's 52 on those public PDFs, and 200
  against 7 on plain one-font text, where pypdf is at its fastest.
pypdfium2 (which renders pages for the web page) extracts text faster, but finds no tables.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from indexer.ingestion.readers import PAGES, UnreadableFile, _document
from indexer.ingestion.tables import markdown_table

if TYPE_CHECKING:
    from llama_index.core.schema import Document

# Word gaps relative to the font size (pdfplumber's x_tolerance_ratio): 0.15 em splits words set
# tightly, without splitting a word whose letters are spaced for justification.
_TEXT_OPTIONS: dict[str, Any] = {"x_tolerance_ratio": 0.15, "use_text_flow": True}
# pdfminer writes "(cid:N)" for a glyph it cannot map to a character; pypdf wrote NUL or "/C0".
_UNMAPPED_RE = re.compile(r"\(cid:\d+\)|\x00")
# A "table" whose cells hold paragraphs is a page layout drawn with rules (a two-column course
# outline, a boxed quote): its text reads better as text than squeezed into one-line cells.
_LAYOUT_CELL_CHARS = 200
PAGE_SEPARATOR = "\n\n"


@dataclass
class PdfText:
    """A PDF's text, page by page (tables as Markdown, in place), and its title."""

    pages: list[str] = field(default_factory=list)
    title: str = ""


def read_pdf(raw: bytes, ocr: str = "auto", languages: Sequence[str] = ("en",)) -> list[Document]:
    """The PDF as one document (``pages`` metadata: where each page starts in its text), its pages
    without a usable text layer read by OCR as ``data.ocr`` (``ocr``) says."""
    from indexer.ingestion.ocr import NO_TEXT, OCR_PAGES, ocr_pdf_texts

    text = extract(raw)
    read = ocr_pdf_texts(raw, text.pages, ocr, languages)
    text.pages = read.texts
    document = pdf_document(text)
    if read.confidence:
        document.metadata[OCR_PAGES] = sorted(read.confidence.items())
    if read.no_text:
        document.metadata[NO_TEXT] = sorted(read.no_text.items())
    return [document]


def pdf_document(text: PdfText) -> Document:
    """One document of the pages' texts, joined by a blank line; a page with no text starts
    nowhere (the page before it holds the offset)."""
    parts: list[str] = []
    pages: list[tuple[int, int]] = []
    offset = 0
    for number, page in enumerate(text.pages, start=1):
        page = page.strip()
        if not page:
            continue
        if parts:
            offset += len(PAGE_SEPARATOR)
        pages.append((offset, number))
        parts.append(page)
        offset += len(page)
    metadata: dict[str, Any] = {PAGES: pages}
    if pages:
        metadata["page"] = pages[0][1]
    if text.title:
        metadata["title"] = text.title
    return _document(text=PAGE_SEPARATOR.join(parts), metadata=metadata)


def extract(raw: bytes) -> PdfText:
    """Every page's text and tables; ``UnreadableFile`` for an encrypted or broken PDF."""
    import pdfplumber
    from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect
    from pdfplumber.utils.exceptions import PdfminerException

    try:
        # pdfminer tries the empty user password, so a copy-protected PDF opens and reads.
        with pdfplumber.open(io.BytesIO(raw)) as pdf:
            result = PdfText(title=_title(pdf.metadata))
            for page in pdf.pages:
                result.pages.append(page_text(page))
                page.close()  # frees the page's parsed objects: memory stays that of one page
    except PdfminerException as exc:
        cause = exc.args[0] if exc.args else exc
        if isinstance(cause, PDFPasswordIncorrect):
            raise UnreadableFile("encrypted PDF (password protected)") from None
        if isinstance(cause, PDFEncryptionError):
            raise UnreadableFile(f"encrypted PDF that cannot be decrypted ({cause})") from None
        raise UnreadableFile(f"not a readable PDF ({type(cause).__name__}: {cause})") from None
    return result


def _title(metadata: dict[str, Any]) -> str:
    title = metadata.get("Title")
    return title.strip() if isinstance(title, str) else ""


def page_text(page: Any) -> str:
    """One pdfplumber page as text in reading order, each table as a Markdown table where it
    stands, its cells not repeated in the text around it; text set sideways (a margin note, a page
    turned by its text matrix) follows, line by line."""
    rotated = [c for c in page.chars if not c.get("upright", True)]
    if rotated:
        page = page.filter(lambda obj: obj.get("object_type") != "char" or obj.get("upright", True))
    text = _upright_text(page)
    if rotated:
        text = f"{text}\n{_sideways_text(rotated)}" if text.strip() else _sideways_text(rotated)
    return clean(re.sub(r"\n{3,}", "\n\n", text))


def _upright_text(page: Any) -> str:
    tables = [
        (t.bbox, rendered) for t in page.find_tables() if (rendered := _table(t.extract(**_TEXT_OPTIONS)))
    ]
    if not tables:
        return str(page.extract_text(**_TEXT_OPTIONS) or "")
    boxes = [bbox for bbox, _ in tables]
    outside = page.filter(lambda obj: obj.get("object_type") != "char" or not _inside(obj, boxes))
    lines = outside.extract_text_lines(return_chars=False, **_TEXT_OPTIONS)
    # (line index, 0 for a table that goes before that line / 1 for the line, text)
    blocks: list[tuple[int, int, str]] = [(i, 1, line["text"]) for i, line in enumerate(lines)]
    for (x0, top, x1, _), rendered in tables:
        # Before the first line (in reading order) below the table's top in its columns.
        at = next(
            (i for i, line in enumerate(lines) if line["top"] >= top and line["x0"] < x1 and line["x1"] > x0),
            len(lines),
        )
        blocks.append((at, 0, "\n" + rendered + "\n"))
    blocks.sort(key=lambda b: b[:2])
    return "\n".join(t for _, _, t in blocks)


def _sideways_text(chars: list[dict[str, Any]]) -> str:
    """Characters not upright, in the order the page draws them (pdfplumber's word grouping
    reverses or splits them), a new line wherever the baseline moves across the text's direction."""
    lines: list[str] = []
    line: list[str] = []
    last: float | None = None
    for char in chars:
        a, b, _, _, e, f = char["matrix"]
        norm = math.hypot(a, b) or 1.0
        across = (-b * e + a * f) / norm  # the baseline's position across the writing direction
        if last is not None and abs(across - last) > char.get("size", 1.0) / 2:
            lines.append("".join(line))
            line = []
        line.append(char["text"])
        last = across
    lines.append("".join(line))
    return "\n".join(" ".join(text.split()) for text in lines if text.strip())


def _table(rows: Sequence[Sequence[str | None]]) -> str:
    """A found table as Markdown, or "" when it is no table: fewer than two rows or columns with
    text, mostly empty cells (ruled boxes), or a page layout (cells holding paragraphs)."""
    cells = [[clean(c or "").strip() for c in row] for row in rows]
    filled = [c for row in cells for c in row if c]
    drawn = sum(1 for row in rows for c in row if c is not None)  # None: covered by a merged cell
    rows_with_text = sum(1 for row in cells if any(row))
    columns_with_text = sum(1 for col in zip(*cells, strict=False) if any(col)) if cells else 0
    if rows_with_text < 2 or columns_with_text < 2 or len(filled) * 2 < drawn:
        return ""
    if sum(len(c) for c in filled) / len(filled) > _LAYOUT_CELL_CHARS:
        return ""
    return markdown_table(cells)


def _inside(char: dict[str, Any], boxes: list[tuple[float, float, float, float]]) -> bool:
    x = (char["x0"] + char["x1"]) / 2
    y = (char["top"] + char["bottom"]) / 2
    return any(x0 <= x <= x1 and top <= y <= bottom for x0, top, x1, bottom in boxes)


def clean(text: str) -> str:
    """Text without the marks of glyphs that map to no character."""
    return _UNMAPPED_RE.sub("", text)
