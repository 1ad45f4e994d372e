"""Issue 28, items 1, 2 and 7: tables stay tables. DOCX, PPTX, ODT, CSV/TSV, XLSX and ODS tables
come back as Markdown tables, each row whole on one line under its header; a table that fits in a
chunk stays whole, a longer one is split between rows with its header repeated; spreadsheets give
one section per sheet, formulas as their saved values, merged cells filled, and bounded reading.
Every fixture is written here, from code, so the truth is known."""

from __future__ import annotations

import io
import re
import resource
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from indexer.components.embedding import resolve_model_location
from indexer.config.models import ChunkingConfig
from indexer.ingestion.chunking import chunk_document, make_splitter
from indexer.ingestion.readers import ReadLimits, UnreadableFile, read_file
from indexer.ingestion.tables import markdown_table
from tests.adversarial.helpers import cli, small_config, write_docs
from tests.conftest import SHARED_DATA

TOKENIZER_JSON = Path(resolve_model_location("default")) / "tokenizer.json"  # the bundled embedder's
HEADER = ["Country", "Per diem", "Hotel cap per night"]
ROWS = [["Germany", "€38", "€140"], ["France", "€35", "€130"], ["Japan", "¥5200", "¥18000"]]
TABLE = markdown_table([HEADER, *ROWS])
GERMANY = "| Germany | €38 | €140 |"
SHARED_FILES = SHARED_DATA / "mixed_docs_unstructured" / "files"


def _text(path: Path, limits: ReadLimits | None = None) -> str:
    return "\n\n".join(d.text for d in read_file(path, limits))


# DOCX


def _docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.core_properties.title = "Travel policy"
    document.add_heading("Travel policy", level=0)
    document.add_paragraph("Staff travelling abroad are paid a daily allowance.")
    document.add_heading("Allowances", level=1)
    table = document.add_table(rows=len(ROWS) + 1, cols=3)
    for r, row in enumerate([HEADER, *ROWS]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_paragraph("Receipts are kept for seven years.")
    merged = document.add_table(rows=3, cols=3)
    for r, row in enumerate([["Region", "City", "Rate"], ["Europe", "Berlin", "high"], ["", "Lyon", "low"]]):
        for c, value in enumerate(row):
            merged.cell(r, c).text = value
    merged.cell(1, 0).merge(merged.cell(2, 0))  # "Europe" down two rows
    document.save(path)
    return path


def test_docx_tables_come_in_body_order_with_headings_and_title(tmp_path: Path) -> None:
    [doc] = read_file(_docx(tmp_path / "policy.docx"))
    text = doc.text
    assert TABLE in text
    order = ["daily allowance", "Allowances", "| Country |", GERMANY, "seven years", "| Region |"]
    positions = [text.index(needle) for needle in order]
    assert positions == sorted(positions)
    assert [heading for _, heading in doc.metadata["headings"]] == ["Travel policy", "Allowances"]
    assert all(text[offset:].startswith(heading) for offset, heading in doc.metadata["headings"])
    assert doc.metadata["title"] == "Travel policy"
    # A merged cell's value is in every cell it covers, so each row reads whole.
    assert "| Europe | Berlin | high |\n| Europe | Lyon | low |" in text


def test_docx_chunks_get_the_word_heading_as_section(tmp_path: Path) -> None:
    splitter = make_splitter(ChunkingConfig(chunk_size=40, chunk_overlap=0), TOKENIZER_JSON.read_text())
    docs = read_file(_docx(tmp_path / "policy.docx"))
    chunks = chunk_document(splitter, docs, doc_id="policy.docx", file_hash="0" * 64)
    table_chunk = next(c for c in chunks if GERMANY in c.text)
    assert table_chunk.metadata["section"] == "Allowances"


def test_docx_text_in_content_controls_and_tracked_changes_is_read(tmp_path: Path) -> None:
    import docx
    from docx.oxml import parse_xml

    document = docx.Document()
    document.add_paragraph("Visible paragraph.")
    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    document.element.body.append(
        parse_xml(
            f"<w:sdt {w}><w:sdtContent><w:p><w:r><w:t>Cover page subtitle</w:t></w:r></w:p>"
            "</w:sdtContent></w:sdt>"
        )
    )
    document.element.body.append(
        parse_xml(
            f"<w:p {w}><w:r><w:t>Rate </w:t></w:r><w:ins><w:r><w:t>raised</w:t></w:r></w:ins>"
            "<w:del><w:r><w:delText>cut</w:delText></w:r></w:del></w:p>"
        )
    )
    document.element.body.append(document.element.body.sectPr)  # the section's properties stay last
    path = tmp_path / "controls.docx"
    document.save(path)
    text = _text(path)
    assert "Cover page subtitle" in text and "Rate raised" in text and "cut" not in text


def test_a_damaged_docx_gives_a_one_line_reason(tmp_path: Path) -> None:
    path = _docx(tmp_path / "policy.docx")
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(UnreadableFile, match=r"^not a readable DOCX \(") as caught:
        read_file(path)
    assert "\n" not in str(caught.value)


# PPTX


def test_pptx_tables_are_markdown_tables(tmp_path: Path) -> None:
    pptx = pytest.importorskip("pptx")
    from pptx.util import Inches

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[5])  # title only
    slide.shapes.title.text = "Per diem rates"
    table = slide.shapes.add_table(len(ROWS) + 1, 3, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for r, row in enumerate([HEADER, *ROWS]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    path = tmp_path / "rates.pptx"
    deck.save(str(path))
    [doc] = read_file(path)
    assert TABLE in doc.text and doc.metadata["section"] == "Per diem rates"


# ODT and ODS (odfpy)


def _odf_row(*cells: object) -> object:
    from odf.table import CoveredTableCell, TableCell, TableRow
    from odf.text import P

    row = TableRow()
    for cell in cells:
        if cell is None:
            row.addElement(CoveredTableCell())
        elif isinstance(cell, dict):  # attributes of a cell: spans, repeats, a formula
            text = cell.pop("text", "")
            element = TableCell(**cell)
            if text:
                element.addElement(P(text=text))
            row.addElement(element)
        else:
            element = TableCell(valuetype="string")
            element.addElement(P(text=str(cell)))
            row.addElement(element)
    return row


def test_odt_tables_are_markdown_tables_in_order_with_merged_cells(tmp_path: Path) -> None:
    pytest.importorskip("odf")
    from odf.opendocument import OpenDocumentText
    from odf.table import Table, TableColumn
    from odf.text import H, P

    document = OpenDocumentText()
    document.text.addElement(H(outlinelevel=1, text="Allowances"))
    document.text.addElement(P(text="The rates per country:"))
    table = Table(name="Rates")
    table.addElement(TableColumn(numbercolumnsrepeated=3))
    for row in [HEADER, *ROWS]:
        table.addElement(_odf_row(*row))
    document.text.addElement(table)
    document.text.addElement(P(text="Receipts are kept for seven years."))
    merged = Table(name="Regions")
    merged.addElement(_odf_row("Region", "City", "Rate"))
    merged.addElement(_odf_row({"text": "Europe", "numberrowsspanned": 2}, "Berlin", "high"))
    merged.addElement(_odf_row(None, "Lyon", "low"))
    merged.addElement(_odf_row({"text": "Both", "numbercolumnsspanned": 2}, None, "any"))
    document.text.addElement(merged)
    path = tmp_path / "policy.odt"
    document.save(str(path))

    [doc] = read_file(path)
    assert TABLE in doc.text
    assert doc.text.index("rates per country") < doc.text.index(GERMANY) < doc.text.index("seven years")
    assert "| Europe | Berlin | high |\n| Europe | Lyon | low |\n| Both | Both | any |" in doc.text
    assert "\nGermany\n" not in doc.text  # cells are no longer paragraphs of their own
    assert doc.metadata["headings"] == [(0, "Allowances")]


def _ods(path: Path) -> Path:
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.style import Style, TableProperties
    from odf.table import Table

    document = OpenDocumentSpreadsheet()
    hidden = Style(name="hiddensheet", family="table")
    hidden.addElement(TableProperties(display="false"))
    document.automaticstyles.addElement(hidden)
    rates = Table(name="Rates")
    rates.addElement(_odf_row({"text": "Per diem 2026", "numbercolumnsspanned": 3}, None, None))
    for row in [HEADER, *ROWS]:
        rates.addElement(_odf_row(*row))
    total = {"formula": "of:=[.B2]+[.B3]", "valuetype": "float", "value": "73", "text": "73"}
    rates.addElement(_odf_row("Sum", total, ""))
    # Formatting down to the sheet's last row: a million repeated empty rows, never expanded.
    rates.addElement(_odf_row({"numbercolumnsrepeated": 1024}))
    rates.lastChild.setAttribute("numberrowsrepeated", "1048000")
    document.spreadsheet.addElement(rates)
    secret = Table(name="Secret", stylename="hiddensheet")
    secret.addElement(_odf_row("Password", "hunter2"))
    document.spreadsheet.addElement(secret)
    empty = Table(name="Empty")
    empty.addElement(_odf_row({"numbercolumnsrepeated": 5}))
    document.spreadsheet.addElement(empty)
    document.save(str(path))
    return path


def test_ods_sheets_are_sections_with_saved_formula_values(tmp_path: Path) -> None:
    pytest.importorskip("odf")
    start = resource.getrusage(resource.RUSAGE_SELF).ru_utime
    docs = read_file(_ods(tmp_path / "rates.ods"))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_utime - start < 5  # the million rows cost nothing
    assert [d.metadata["section"] for d in docs] == ["Rates"]  # hidden and empty sheets left out
    text = docs[0].text
    assert text.startswith("Per diem 2026\n\n")  # a title row over the table is text above it
    assert TABLE in text and "| Sum | 73 |" in text


# CSV / TSV


def test_csv_and_tsv_are_markdown_tables(tmp_path: Path) -> None:
    semicolons = tmp_path / "rates.csv"
    lines = [";".join(HEADER), *(";".join(row) for row in ROWS), 'Peru;"S/ 90; cash";"S/ 300"']
    semicolons.write_text("\n".join(lines) + "\n", encoding="utf-8")
    text = _text(semicolons)
    assert text.startswith(TABLE) and "| Peru | S/ 90; cash | S/ 300 |" in text
    tabs = tmp_path / "rates.tsv"
    tabs.write_text("\n".join("\t".join(row) for row in [HEADER, *ROWS]) + "\n", encoding="utf-8")
    assert _text(tabs) == TABLE


def test_a_long_csv_is_bounded_by_max_document_chars(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text("a,b\n" + "1,2\n" * 5000, encoding="utf-8")
    with pytest.raises(UnreadableFile, match=r"more than data\.max_document_chars \(1000\)"):
        read_file(path, ReadLimits(max_document_chars=1000))


# XLSX (openpyxl)


def _rewrite(raw: bytes, member: str, change: Callable[[str], str]) -> bytes:
    """The zip ``raw`` with one member's XML changed (what openpyxl cannot write itself)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(raw)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == member:
                data = change(data.decode()).encode()
            target.writestr(info.filename, data)
    return out.getvalue()


def _xlsx(path: Path) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Rates"
    sheet.append(["Per diem 2026"])
    sheet.merge_cells("A1:C1")
    for row in [HEADER, *ROWS]:
        sheet.append(row)
    sheet.append(["Europe", "Berlin", 1.5])
    sheet.append([None, "Lyon", 2])
    sheet.merge_cells("A6:A7")
    sheet.append(["Total", "=C6+C7"])
    book.create_sheet("Empty")
    hidden = book.create_sheet("Secret")
    hidden.append(["Password", "hunter2"])
    hidden.sheet_state = "hidden"
    buffer = io.BytesIO()
    book.save(buffer)

    def saved_values(xml: str) -> str:
        # What Excel saves: the formula's last value beside it (openpyxl writes none), and a used
        # range that formatting stretched over the whole sheet, down to a styled empty last row.
        xml = xml.replace("<f>C6+C7</f><v></v>", "<f>C6+C7</f><v>3.5</v>")
        xml = re.sub(r'<dimension ref="[^"]+"/>', '<dimension ref="A1:XFD1048576"/>', xml)
        return xml.replace("</sheetData>", '<row r="1048576"><c r="XFD1048576" s="0"/></row></sheetData>')

    path.write_bytes(_rewrite(buffer.getvalue(), "xl/worksheets/sheet1.xml", saved_values))
    return path


def test_xlsx_sheets_are_sections_with_cached_formula_values_and_merged_cells(tmp_path: Path) -> None:
    start = resource.getrusage(resource.RUSAGE_SELF).ru_utime
    docs = read_file(_xlsx(tmp_path / "rates.xlsx"))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_utime - start < 5  # the stretched range is free
    assert [d.metadata["section"] for d in docs] == ["Rates"]  # empty and hidden sheets left out
    text = docs[0].text
    assert text.startswith("Per diem 2026\n\n")  # the merged title row is text above the table
    assert TABLE in text
    assert "| Europe | Berlin | 1.5 |\n| Europe | Lyon | 2 |" in text
    assert "| Total | 3.5 |" in text and "C6+C7" not in text


def test_xlsx_reading_stops_at_max_document_chars(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    for _ in range(2000):
        book.active.append(["the same long shared string " * 4] * 5)
    path = tmp_path / "big.xlsx"
    book.save(path)
    with pytest.raises(UnreadableFile, match=r"more than data\.max_document_chars \(10000\)"):
        read_file(path, ReadLimits(max_document_chars=10_000))


def test_an_encrypted_xlsx_says_it_is_password_protected(tmp_path: Path) -> None:
    # Excel's encrypted workbook: an OLE compound file holding the EncryptionInfo and
    # EncryptedPackage streams (their names in UTF-16), not a zip.
    names = b"".join(
        name.encode("utf-16-le").ljust(64, b"\0") for name in ("EncryptionInfo", "EncryptedPackage")
    )
    path = tmp_path / "salaries.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504 + names + b"\0" * 2048)
    with pytest.raises(UnreadableFile, match=r"^encrypted spreadsheet \(password protected\)$"):
        read_file(path)
    old = tmp_path / "old.xlsx"  # an old binary workbook under the new name: not called encrypted
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 4096)
    with pytest.raises(UnreadableFile, match="not an XLSX file"):
        read_file(old)


@pytest.mark.parametrize("damage", ["truncated", "not-a-zip", "no-workbook"])
def test_a_damaged_xlsx_gives_a_one_line_reason(tmp_path: Path, damage: str) -> None:
    raw = _xlsx(tmp_path / "rates.xlsx").read_bytes()
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "not-a-zip":
        raw = b"Country,Rate\nGermany,38\n"
    else:
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(raw)) as source, zipfile.ZipFile(out, "w") as target:
            for info in source.infolist():
                if info.filename != "xl/workbook.xml":
                    target.writestr(info.filename, source.read(info.filename))
        raw = out.getvalue()
    path = tmp_path / "damaged.xlsx"
    path.write_bytes(raw)
    with pytest.raises(UnreadableFile, match=r"^not a readable XLSX \(") as caught:
        read_file(path)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


@pytest.mark.shared_data(SHARED_FILES)
def test_the_real_stanley_cups_workbook_reads_as_two_sheets() -> None:
    docs = read_file(SHARED_FILES / "stanley-cups.xlsx")
    assert [d.metadata["section"] for d in docs] == ["Stanley Cups", "Stanley Cups Since 67"]
    assert "| Team | Location | Stanley Cups |\n|---|---|---|\n| Blues | STL | 1 |" in docs[0].text
    assert "| Maple Leafs | TOR | 13 |" in docs[0].text and "| Maple Leafs | TOR | 0 |" in docs[1].text
    csv_text = _text(SHARED_FILES / "stanley-cups.csv")
    assert "| Team | Location | Stanley Cups |\n|---|---|---|\n| Blues | STL | 1 |" in csv_text


# Chunking


@pytest.fixture(scope="module")
def splitter() -> Callable[[int], object]:
    tokenizer = TOKENIZER_JSON.read_text()
    return lambda size: make_splitter(ChunkingConfig(chunk_size=size, chunk_overlap=8), tokenizer)


def _chunks(splitter: Callable[[int], object], size: int, text: str) -> list:
    from llama_index.core.schema import Document

    return chunk_document(splitter(size), [Document(text=text)], doc_id="t.md", file_hash="0" * 64)


def test_a_table_that_fits_stays_whole_with_the_text_before_it(splitter) -> None:
    text = "The rates per country follow.\n\n" + TABLE + "\n\nReceipts are kept for seven years."
    chunks = _chunks(splitter, 128, text)
    assert sum(TABLE in c.text for c in chunks) == 1
    whole = next(c for c in chunks if TABLE in c.text)
    assert text[whole.metadata["start_char"] : whole.metadata["end_char"]] == whole.text


def test_a_long_table_is_split_between_rows_with_its_header_repeated(splitter) -> None:
    rows = [[f"Country {i}", f"€{i}", f"€{10 * i}", f"note {i} " * (i % 4)] for i in range(300)]
    header = ["Country", "Per diem", "Hotel cap", "Notes"]
    table = markdown_table([header, *rows])
    text = "Intro paragraph about allowances.\n\n" + table + "\n\nClosing paragraph."
    chunks = _chunks(splitter, 64, text)
    pieces = [c for c in chunks if "| Country |" in c.text]
    assert len(pieces) > 5
    head = "\n".join(table.split("\n")[:2])
    expected_rows = table.split("\n")[2:]
    seen = []
    for piece in pieces:
        lines = piece.text[piece.text.index("| Country |") :].split("\n")
        assert "\n".join(lines[:2]) == head  # the header and its |---| line lead every piece
        for line in lines[2:]:
            assert line in expected_rows  # no row is cut
            seen.append(line)
        start, end = piece.metadata["start_char"], piece.metadata["end_char"]
        assert text[start:end] in piece.text  # its offsets are its own rows' (and text's) in the document
    assert seen == expected_rows  # every row once, in order
    assert chunks[-1].text == "Closing paragraph."
    starts = [c.metadata["start_char"] for c in chunks]
    assert starts == sorted(starts)


def test_a_row_longer_than_a_chunk_is_cut_and_bounded(splitter) -> None:
    long_cell = "word " * 400 + "x" * 3000  # many words, then one word of 3000 characters
    table = markdown_table([["Key", "Value"], ["short", "one"], ["long", long_cell], ["after", "two"]])
    chunks = _chunks(splitter, 64, table)
    assert "| short | one |" in chunks[0].text and any("| after | two |" in c.text for c in chunks)
    assert all(c.text.startswith("| Key | Value |\n|---|---|\n") for c in chunks)
    assert all(len(c.text) <= 64 * 16 + 40 for c in chunks)  # MAX_CHARS_PER_TOKEN per token, at most
    assert "".join(c.text.split("|---|---|\n", 1)[1] for c in chunks).count("x") == 3000


def test_a_header_too_wide_to_repeat_splits_the_table_between_rows_alone(splitter) -> None:
    header = [f"Column heading {i}" for i in range(12)]
    rows = [[f"r{r}c{c}" for c in range(12)] for r in range(30)]
    table = markdown_table([header, *rows])
    chunks = _chunks(splitter, 64, table)
    assert len(chunks) > 2 and sum(c.text.count("| Column heading 0 |") for c in chunks) == 1
    assert [line for c in chunks for line in c.text.split("\n")] == table.split("\n")  # rows whole
    assert all(table[c.metadata["start_char"] : c.metadata["end_char"]] == c.text for c in chunks)


def test_text_without_tables_is_chunked_as_before(splitter) -> None:
    from llama_index.core.schema import Document

    text = "A sentence about the mast. " * 60 + "\n\nA | pipe | in prose is not a table."
    made = splitter(64)
    plain = made.get_nodes_from_documents([Document(text=text)])
    assert [c.text for c in _chunks(splitter, 64, text)] == [n.text for n in plain]


# End to end


def _travel_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Travel policy", level=1)
    for _ in range(12):
        document.add_paragraph("Book trains for journeys under four hours; flights need approval. " * 3)
    document.add_heading("Per diem and hotel caps", level=1)
    table = document.add_table(rows=1, cols=3)
    for c, value in enumerate(HEADER):
        table.cell(0, c).text = value
    for i in range(60):
        cells = table.add_row().cells
        for c, value in enumerate([f"Country {i}", f"€{20 + i}", f"€{90 + i}"]):
            cells[c].text = value
    cells = table.add_row().cells
    for c, value in enumerate(ROWS[0]):
        cells[c].text = value
    document.save(path)


@pytest.mark.slow
def test_a_built_index_retrieves_the_table_row_whole_under_its_header(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    _travel_docx(docs / "travel.docx")
    config = small_config(tmp_path / "cfg", docs, chunking={"chunk_size": 96, "chunk_overlap": 16})
    built = cli("build", str(config), "--json")
    assert built.returncode == 0, built.stderr
    assert built.json()["skipped"] == []
    hits = cli("query", str(config), "Germany hotel cap per night", "--retrieve-only", "--json").json()
    sources = [s for s in hits["sources"] if s["file"] == "travel.docx"]
    table_hit = next(s for s in sources if GERMANY in s["text"])
    assert table_hit["text"].count("| Country | Per diem | Hotel cap per night |\n|---|---|---|") == 1
    assert table_hit["section"] == "Per diem and hotel caps"


def test_a_table_is_embedded_without_its_pipe_syntax_and_stored_with_it() -> None:
    from indexer.ingestion.tables import embedding_text

    table = markdown_table([["code", "meaning"], ["E-214", "no answer on the I2C bus"], ["a|b", ""]])
    text = f"Codes | below.\n\n{table}\nThe end."
    plain = "Codes | below.\n\ncode  meaning\nE-214  no answer on the I2C bus\na|b\nThe end."
    assert embedding_text(text) == plain
    assert embedding_text("No table | here.\n| but a line like this is one |") == (
        "No table | here.\nbut a line like this is one"
    )
    assert embedding_text("Plain text.") == "Plain text."


def test_the_stored_vector_of_a_table_chunk_is_that_of_its_text_without_pipes(built_sample: Path) -> None:
    import numpy as np

    from indexer import Indexer
    from indexer.ingestion.tables import embedding_text

    ix = Indexer.from_config(built_sample)
    [first, *_] = ix.file_passages("error_codes.csv") or []
    assert first.text.startswith("| code | subsystem |")  # stored as the Markdown table
    stored = ix.vector_store._collection.get(ids=[first.id], include=["embeddings"])["embeddings"][0]
    vectors, _ = ix.embed([embedding_text(first.text), first.text])
    without_pipes, with_pipes = (
        float(np.dot(stored, v) / np.linalg.norm(stored) / np.linalg.norm(v)) for v in vectors
    )
    # (The build's number format may differ from the question path's in the last digits.)
    assert without_pipes > 0.999 and with_pipes < 0.99, (without_pipes, with_pipes)
    # The question about a row finds that row's piece of the table, as it did when CSV was plain.
    assert any("| E-214 |" in s.text for s in ix.retrieve("What does error E-214 mean?", top_k=2))
