"""PDFs (issue 28): tables come back as Markdown tables where they stand, their cells not repeated in
the text; a PDF is one document whose chunks carry the page they start on and the page they end on.
The PDFs are written with fpdf2 from known text, so the truth is known."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from indexer.components.embedding import resolve_model_location
from indexer.config.models import ChunkingConfig
from indexer.ingestion.chunking import chunk_document, make_splitter
from indexer.ingestion.readers import PAGES, UnreadableFile, read_file
from tests.support.pdfs import write_pdf

RATES = [
    ["Country", "Per diem", "Hotel cap per night"],
    ["Germany", "EUR 38", "EUR 140"],
    ["France", "EUR 41", "EUR 152"],
    ["Norway", "EUR 57", "EUR 199"],
]
BEFORE = "Staff who travel abroad claim the daily allowance of the country they sleep in."
AFTER = "Receipts for hotels are kept for ten years by the finance office."


def test_a_pdf_table_is_a_markdown_table_in_place_and_not_repeated(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "travel.pdf", [[BEFORE, RATES, AFTER]], title="Travel policy")
    [doc] = read_file(path)
    assert doc.metadata["title"] == "Travel policy" and doc.metadata[PAGES] == [(0, 1)]
    lines = doc.text.splitlines()
    header = lines.index("| Country | Per diem | Hotel cap per night |")
    assert lines[header + 1] == "|---|---|---|"
    assert lines[header + 2 : header + 5] == [
        "| Germany | EUR 38 | EUR 140 |",
        "| France | EUR 41 | EUR 152 |",
        "| Norway | EUR 57 | EUR 199 |",
    ]
    # In place: after the paragraph above it, before the one below it.
    assert doc.text.index(BEFORE.split()[0]) < doc.text.index("| Country") < doc.text.index("Receipts")
    for row in RATES:
        for cell in row:
            assert doc.text.count(cell) == 1, cell  # only in its table row


def test_a_layout_grid_stays_text(tmp_path: Path) -> None:
    long = "This paragraph sits in a ruled box of a page layout and is not a row of data at all. " * 3
    path = write_pdf(tmp_path / "layout.pdf", [[[["Left column. " + long, "Right column. " + long]] * 2]])
    [doc] = read_file(path)
    assert "|" not in doc.text and "Left column." in doc.text


@pytest.fixture(scope="module")
def spans():
    tokenizer = Tokenizer.from_file(str(Path(resolve_model_location("default")) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return lambda text: tokenizer.encode(text, add_special_tokens=False).offsets


def test_chunks_carry_the_page_they_start_and_end_on(tmp_path: Path, spans) -> None:
    pages = [
        [f"Page {n} sentence {i} about the weather station logbook." for i in range(28)] for n in (1, 2, 3)
    ]
    path = write_pdf(tmp_path / "log.pdf", [[" ".join(p)] for p in pages])
    docs = read_file(path)
    assert len(docs) == 1 and [n for _, n in docs[0].metadata[PAGES]] == [1, 2, 3]
    splitter = make_splitter(ChunkingConfig(chunk_size=64, chunk_overlap=8), spans)
    chunks = chunk_document(splitter, docs, doc_id="log.pdf", file_hash="0" * 32)
    assert all(PAGES not in c.metadata for c in chunks)  # offsets stay out of the stored metadata
    for chunk in chunks:
        page, end = chunk.metadata["page"], chunk.metadata["page_end"]
        text = " ".join(chunk.text.split())
        # Each sentence names its page: the first page named is where the chunk starts, the last
        # one where it ends.
        named = [
            int(word)
            for before, word in zip(text.split(), text.split()[1:], strict=False)
            if before == "Page"
        ]
        assert (page, end) == (named[0], named[-1]), text
    assert any(c.metadata["page_end"] > c.metadata["page"] for c in chunks), "no chunk crosses a page"


def test_a_broken_or_locked_pdf_is_skipped_with_its_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not really a PDF")
    with pytest.raises(UnreadableFile, match="PDF"):
        read_file(broken)
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=11)
    pdf.cell(text="Secret minutes of the board.")
    pdf.set_encryption(owner_password="owner", user_password="user")
    locked = tmp_path / "locked.pdf"
    pdf.output(str(locked))
    with pytest.raises(UnreadableFile, match="encrypted PDF"):
        read_file(locked)
