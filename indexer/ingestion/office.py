"""Readers of the formats that hold tables: DOCX, PPTX, ODT, CSV/TSV and spreadsheets (XLSX, ODS).
Every table comes out as a Markdown table (``tables.markdown_table``), set apart by blank lines, so
the chunker keeps it whole or splits it between rows under its header (``table_chunks.py``).

- DOCX (python-docx): paragraphs and tables in body order; Word's headings (``Heading 1``...,
  ``Title``, and styles based on them) are the document's ``headings``; the page headers and
  footers, once each, before and after the body.
- Spreadsheets: one document per visible sheet, the sheet's name its ``section``, its used range as
  one table whose header is its first row with text. Hidden sheets are left out: a citation names a
  sheet the reader can see. Leading rows with a single value (a sheet's title over its table) are
  text above the table. Formulas give the value the spreadsheet application saved with the file
  (openpyxl's ``data_only``; ODF's displayed text); none is computed here.
- Merged cells: the value of a merged range is repeated in every cell the range covers, in DOCX
  (as python-docx gives it), ODT/ODS and XLSX alike, so every row reads whole on its own (a
  category merged down five rows names it in each).
- Bounded: a sheet's rows are read as a stream (a used range that formatting stretched to a
  million rows costs only the rows that hold cells), and reading stops with a reason once the text
  passes ``data.max_document_chars``.
"""

from __future__ import annotations

import bisect
import csv
import datetime
import io
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from indexer.ingestion.readers import HEADINGS, ReadLimits, UnreadableFile, _document, _require, decode_text
from indexer.ingestion.tables import markdown_table, table_cell

if TYPE_CHECKING:
    from llama_index.core.schema import Document

# What Excel writes for a password-protected workbook: an OLE compound file (not a zip) holding the
# encrypted package (MS-OFFCRYPTO), whose stream names are stored in UTF-16.
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_HEADING_STYLE_RE = re.compile(r"^(?:Heading \d+|Title)$")
_CSV_SNIFF_CHARS = 65536


class _TextBudget:
    """Characters a reader has produced, refused once over ``data.max_document_chars``."""

    def __init__(self, limits: ReadLimits) -> None:
        self.limits = limits
        self.chars = 0

    def take(self, text: str) -> str:
        self.chars += len(text) + 3
        if self.chars > self.limits.max_document_chars:
            raise UnreadableFile(
                f"over {self.limits.max_document_chars} characters of text, "
                f"more than {self.limits.named('max_document_chars')}"
            )
        return text


class _Blocks:
    """Text blocks joined by blank lines, with the offsets of those that are headings."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.headings: list[tuple[int, str]] = []
        self._offset = 0

    def add(self, text: str, heading: bool = False) -> None:
        text = text.strip()
        if not text:
            return
        if heading:
            self.headings.append((self._offset, text))
        self.parts.append(text)
        self._offset += len(text) + 2

    @property
    def text(self) -> str:
        return "\n\n".join(self.parts)


# DOCX


def read_docx(raw: bytes, limits: ReadLimits | None = None) -> list[Document]:
    import docx

    try:
        document = docx.Document(io.BytesIO(raw))
    except Exception as exc:  # zipfile.BadZipFile, KeyError, ValueError, lxml errors on a damaged file
        raise UnreadableFile(f"not a readable DOCX ({type(exc).__name__}: {exc})") from None
    from docx.text.paragraph import Paragraph

    blocks = _Blocks()
    headers, footers = _docx_margins(document)
    for text in headers:
        blocks.add(text)
    for kind, element in _docx_blocks(document.element.body):
        if kind == "p":
            blocks.add(_docx_text(element), heading=_is_heading(Paragraph(element, document)))
        else:
            blocks.add(markdown_table(_docx_rows(element, document)))
    for text in footers:
        blocks.add(text)
    metadata: dict[str, Any] = {HEADINGS: blocks.headings}
    title = (document.core_properties.title or "").strip()
    if title:
        metadata["title"] = title
    return [_document(text=blocks.text, metadata=metadata)]


def _w(tag: str) -> str:
    return "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}" + tag


_W_P, _W_TBL, _W_T, _W_TAB = _w("p"), _w("tbl"), _w("t"), _w("tab")
_W_BREAKS = {_w("br"), _w("cr")}
_W_WRAPPERS = {_w("sdt"), _w("sdtContent"), _w("customXml")}  # content controls around blocks
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"


def _docx_blocks(container: Any) -> Iterator[tuple[str, Any]]:
    """The paragraphs (``"p"``) and tables (``"tbl"``) of a body or a cell in order, those inside
    content controls included (python-docx's own iteration leaves them out)."""
    for child in container.iterchildren():
        if child.tag == _W_P:
            yield "p", child
        elif child.tag == _W_TBL:
            yield "tbl", child
        elif child.tag in _W_WRAPPERS:
            yield from _docx_blocks(child)


def _docx_text(element: Any) -> str:
    """A paragraph's text, as Word shows it: every run's, those in hyperlinks, fields, content
    controls, tracked insertions and text boxes included (deleted text is ``w:delText``, not read);
    a drawing's legacy copy (``mc:Fallback``) is skipped, so a text box is read once."""
    parts: list[str] = []
    for child in element.iterchildren():
        tag = child.tag
        if tag == _W_T:
            parts.append(child.text or "")
        elif tag == _W_TAB:
            parts.append("\t")
        elif tag in _W_BREAKS:
            parts.append("\n")
        elif tag == _W_P:  # a paragraph of a text box
            parts.append("\n" + _docx_text(child) + "\n")
        elif tag != _MC_FALLBACK and isinstance(tag, str):
            parts.append(_docx_text(child))
    return "".join(parts)


def _is_heading(paragraph: Any) -> bool:
    style = paragraph.style
    for _ in range(8):  # a custom style based on "Heading 2" is a heading too
        if style is None:
            return False
        if _HEADING_STYLE_RE.match(style.name or ""):
            return True
        style = style.base_style
    return False


def _docx_rows(element: Any, document: Any) -> list[list[str]]:
    from docx.table import Table

    # A merged cell is the same cell in every grid position it spans: its text repeats.
    return [
        [_docx_cell_text(cell._tc, document) for cell in row.cells] for row in Table(element, document).rows
    ]


def _docx_cell_text(cell: Any, document: Any) -> str:
    parts = []
    for kind, element in _docx_blocks(cell):
        if kind == "p":
            parts.append(_docx_text(element))
        else:  # a table in the cell: its rows inline, cells by commas, rows by semicolons
            rows = [", ".join(filter(None, row)) for row in _docx_rows(element, document)]
            parts.append("; ".join(filter(None, rows)))
    return " ".join(p.strip() for p in parts if p.strip())


def _docx_margins(document: Any) -> tuple[list[str], list[str]]:
    """The distinct texts of the page headers and footers (a section's first-page and even-page
    ones too), each once."""
    headers: list[str] = []
    footers: list[str] = []
    for section in document.sections:
        for kind, found in (("header", headers), ("footer", footers)):
            for name in (f"first_page_{kind}", kind, f"even_page_{kind}"):
                part = getattr(section, name)
                if part.is_linked_to_previous:
                    continue
                text = "\n".join(_docx_text(p) for _, p in _docx_blocks(part._element)).strip()
                if text and text not in found:
                    found.append(text)
    return headers, footers


# PPTX


def read_pptx(raw: bytes, limits: ReadLimits | None = None) -> list[Document]:
    # python-pptx directly: LlamaIndex's PptxReader calls logging.basicConfig(level=INFO) when it is
    # imported (turning on every library's info logs) and swallows errors into empty results.
    pptx = _require("pptx", "PowerPoint (.pptx)")
    try:
        deck = pptx.Presentation(io.BytesIO(raw))
    except Exception as exc:  # zipfile.BadZipFile, KeyError, lxml errors on a damaged file
        raise UnreadableFile(f"not a readable PPTX ({type(exc).__name__}: {exc})") from None
    docs = []
    for number, slide in enumerate(deck.slides, start=1):
        parts = list(_pptx_texts(slide.shapes))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            parts.append(slide.notes_slide.notes_text_frame.text)
        metadata: dict[str, Any] = {"page": number}
        title_shape = slide.shapes.title
        if title_shape is not None and title_shape.text.strip():
            metadata["section"] = title_shape.text.strip()
        docs.append(_document(text="\n".join(p for p in parts if p.strip()), metadata=metadata))
    return docs


def _pptx_texts(shapes: Iterable[Any]) -> Iterator[str]:
    for shape in shapes:
        if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            yield shape.text_frame.text
        elif getattr(shape, "has_table", False) and shape.has_table:
            rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
            yield "\n" + markdown_table(rows) + "\n"  # blank lines set the table apart
        elif hasattr(shape, "shapes"):  # a group
            yield from _pptx_texts(shape.shapes)


# OpenDocument (ODT text, ODS spreadsheets)


def _load_odf(raw: bytes, kind: str, format_name: str) -> Any:
    """The OpenDocument file in ``raw`` (odfpy); ``format_name`` names it if odfpy is missing."""
    _require("odf", format_name)
    from odf import opendocument

    try:
        return opendocument.load(io.BytesIO(raw))
    except Exception as exc:  # zipfile.BadZipFile, KeyError, XML errors
        raise UnreadableFile(f"not a readable {kind} ({type(exc).__name__}: {exc})") from None


def read_odt(raw: bytes, limits: ReadLimits | None = None) -> list[Document]:
    doc = _load_odf(raw, "ODT", "OpenDocument (.odt)")
    from odf import teletype
    from odf.namespaces import TABLENS, TEXTNS

    budget = _TextBudget(limits or ReadLimits())
    blocks = _Blocks()
    for element in _odf_blocks(doc.text, {(TEXTNS, "h"), (TEXTNS, "p"), (TABLENS, "table")}):
        if element.qname == (TABLENS, "table"):
            blocks.add(markdown_table(_odf_rows(element, budget)))
        else:
            blocks.add(teletype.extractText(element), heading=element.qname == (TEXTNS, "h"))
    title = ""
    for node in doc.meta.childNodes:
        if getattr(node, "qname", (None, None))[1] == "title":
            title = teletype.extractText(node).strip()
    metadata: dict[str, Any] = {HEADINGS: blocks.headings}
    if title:
        metadata["title"] = title
    return [_document(text=blocks.text, metadata=metadata)]


def _odf_blocks(node: Any, wanted: set[tuple[str, str]]) -> list[Any]:
    """The ``wanted`` elements in document order, not looking inside them (lists and sections
    hold paragraphs too)."""
    found = []
    for child in node.childNodes:
        if getattr(child, "qname", None) in wanted:
            found.append(child)
        elif getattr(child, "childNodes", None):
            found.extend(_odf_blocks(child, wanted))
    return found


def read_ods(raw: bytes, limits: ReadLimits | None = None) -> list[Document]:
    doc = _load_odf(raw, "ODS", "OpenDocument spreadsheet (.ods)")
    from odf.namespaces import STYLENS, TABLENS

    if getattr(doc, "spreadsheet", None) is None:
        raise UnreadableFile("not an OpenDocument spreadsheet (no spreadsheet body)")
    hidden_styles = {
        style.getAttrNS(STYLENS, "name")
        for style in _odf_blocks(doc.automaticstyles, {(STYLENS, "style")})
        if any(
            props.getAttrNS(TABLENS, "display") == "false"
            for props in _odf_blocks(style, {(STYLENS, "table-properties")})
        )
    }
    budget = _TextBudget(limits or ReadLimits())
    docs = []
    for table in _odf_blocks(doc.spreadsheet, {(TABLENS, "table")}):
        if table.getAttrNS(TABLENS, "style-name") in hidden_styles:
            continue
        name = table.getAttrNS(TABLENS, "name") or ""
        text = _sheet_text(_odf_rows(table, budget))
        if text:
            docs.append(_document(text=text, metadata={"section": name} if name else {}))
    return docs


def _odf_rows(table: Any, budget: _TextBudget) -> list[list[str]]:
    """A table's rows with text, repeated rows and columns expanded (the empty ones that style a
    whole sheet never are), merged ranges filled with their value."""
    from odf import teletype
    from odf.namespaces import TABLENS

    rows: list[list[str]] = []
    down: dict[int, tuple[str, int]] = {}  # column -> (value, rows it still covers below)
    cell_names = {(TABLENS, "table-cell"), (TABLENS, "covered-table-cell")}
    for row in _odf_blocks(table, {(TABLENS, "table-row"), (TABLENS, "table")}):
        if row.qname == (TABLENS, "table"):  # a table inside a cell: not a row of this one
            continue
        repeat = int(row.getAttrNS(TABLENS, "number-rows-repeated") or 1)
        cells: list[str] = []
        across: dict[int, str] = {}  # this row's columns covered by a cell to their left
        pending = 0  # empty cells not yet known to be followed by text
        column = 0
        for cell in row.childNodes:
            if getattr(cell, "qname", None) not in cell_names:
                continue
            count = int(cell.getAttrNS(TABLENS, "number-columns-repeated") or 1)
            if cell.qname == (TABLENS, "table-cell"):
                text = table_cell(" ".join(teletype.extractText(p) for p in cell.childNodes))
                spans_across = int(cell.getAttrNS(TABLENS, "number-columns-spanned") or 1)
                spans_down = int(cell.getAttrNS(TABLENS, "number-rows-spanned") or 1)
                if text:
                    for offset in range(1, min(spans_across, 1024)):
                        across[column + offset] = text
                    if spans_down > 1:
                        for offset in range(min(spans_across, 1024)):
                            down[column + offset] = (text, spans_down)
            else:
                text = across.get(column) or (down[column][0] if column in down else "")
            if not text:
                pending += count
                column += count
                continue
            cells.extend([""] * pending)
            pending = 0
            for _ in range(count):
                cells.append(budget.take(text))
            column += count
        down = {c: (v, left - repeat) for c, (v, left) in down.items() if left - repeat > 0}
        if any(cells):
            for _ in range(repeat):
                budget.take(" ".join(cells))
                rows.append(cells)
    return rows


# Spreadsheets (XLSX)


def read_xlsx(raw: bytes, limits: ReadLimits | None = None) -> list[Document]:
    import openpyxl  # type: ignore[import-untyped]
    from openpyxl.worksheet._reader import WorkSheetParser  # type: ignore[import-untyped]

    if raw.startswith(OLE_MAGIC):
        if _ENCRYPTED_PACKAGE in raw:
            raise UnreadableFile("encrypted spreadsheet (password protected)")
        raise UnreadableFile("not an XLSX file (an OLE compound file, such as an old .xls)")
    try:
        with warnings.catch_warnings():  # "no default style", unknown extensions: not the user's concern
            warnings.simplefilter("ignore")
            book = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except Exception as exc:  # InvalidFileException, zipfile.BadZipFile, KeyError, XML errors
        raise UnreadableFile(f"not a readable XLSX ({type(exc).__name__}: {exc})") from None
    budget = _TextBudget(limits or ReadLimits())
    title = (book.properties.title or "").strip() if book.properties else ""
    docs = []
    try:
        for sheet in book.worksheets:
            if sheet.sheet_state != "visible":
                continue
            # ReadOnlyWorksheet's own parser, driven here: iter_rows would pad every row to the
            # sheet's declared dimension and every gap with empty rows, and hides the merged ranges,
            # which come after the rows.
            with book._archive.open(sheet._worksheet_path) as source, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parser = WorkSheetParser(
                    source,
                    sheet._shared_strings,
                    data_only=True,
                    epoch=book.epoch,
                    date_formats=book._date_formats,
                    timedelta_formats=book._timedelta_formats,
                )
                cells: dict[int, dict[int, str]] = {}
                for number, row in parser.parse():
                    values = {c["column"]: budget.take(_xlsx_value(c["value"])) for c in row}
                    values = {column: text for column, text in values.items() if text}
                    if values:
                        cells[number] = values
                merged = parser.merged_cells.mergeCell if parser.merged_cells else []
            _fill_merged(cells, [m.ref for m in merged], budget)
            metadata: dict[str, Any] = {"section": sheet.title}
            if title:
                metadata["title"] = title
            text = _sheet_text(_grid(cells))
            if text:
                docs.append(_document(text=text, metadata=metadata))
    finally:
        book.close()
    return docs


def _xlsx_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))  # 13.0 as Excel shows it, 13
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date().isoformat()
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    return table_cell(value)


def _fill_merged(cells: dict[int, dict[int, str]], refs: Sequence[str], budget: _TextBudget) -> None:
    """Every cell of a merged range gets the value of its top-left cell; only rows and columns that
    hold text elsewhere are filled, so a range over a whole sheet costs no more than its text."""
    from openpyxl.utils.cell import range_boundaries  # type: ignore[import-untyped]

    if not cells:
        return
    last_column = max(max(row) for row in cells.values())
    numbers = sorted(cells)  # the rows with text, searched by bisection: many merges over many rows
    for ref in refs:
        try:
            min_col, min_row, max_col, max_row = range_boundaries(ref)
        except (TypeError, ValueError):
            continue
        if min_col is None or min_row is None or max_col is None or max_row is None:
            continue
        value = cells.get(min_row, {}).get(min_col)
        if not value:
            continue
        for number in numbers[bisect.bisect_left(numbers, min_row) : bisect.bisect_right(numbers, max_row)]:
            for column in range(min_col, min(max_col, last_column) + 1):
                cells[number][column] = budget.take(value)


def _grid(cells: dict[int, dict[int, str]]) -> list[list[str]]:
    """Rows in order, from the first column that holds text."""
    if not cells:
        return []
    first = min(min(row) for row in cells.values())
    last = max(max(row) for row in cells.values())
    return [[cells[n].get(c, "") for c in range(first, last + 1)] for n in sorted(cells)]


def _sheet_text(rows: list[list[str]]) -> str:
    """A sheet's rows as a Markdown table; leading rows that hold one value (a title over the
    table, maybe merged across it) are lines of text above it."""
    rows = [row for row in rows if any(row)]
    lines = []
    while len(rows) > 1 and len({cell for cell in rows[0] if cell}) == 1 and _width(rows[1]) > 1:
        lines.append(next(cell for cell in rows.pop(0) if cell))
    return "\n\n".join([*lines, markdown_table(rows)]).strip()


def _width(row: Sequence[str]) -> int:
    return sum(1 for cell in row if cell)


# CSV / TSV


def read_csv(raw: bytes, limits: ReadLimits | None = None, tab: bool = False) -> list[Document]:
    """A CSV (its dialect sniffed) or TSV file as one Markdown table, its first row the header. A
    file the csv module cannot parse (a field over its size limit) is read as plain text."""
    text = decode_text(raw)
    dialect: type[csv.Dialect] | csv.Dialect = csv.excel_tab
    if not tab:
        try:
            dialect = csv.Sniffer().sniff(text[:_CSV_SNIFF_CHARS], delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
    budget = _TextBudget(limits or ReadLimits())
    try:
        rows = [[budget.take(cell) for cell in row] for row in csv.reader(io.StringIO(text), dialect)]
    except csv.Error:
        return [_document(text=text)]
    return [_document(text=_sheet_text([[table_cell(cell) for cell in row] for row in rows]))]


def read_tsv(raw: bytes, limits: ReadLimits | None = None) -> list[Document]:
    return read_csv(raw, limits, tab=True)
