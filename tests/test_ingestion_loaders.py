"""Loaders on the 54 real public fixtures of ../shared/data/mixed_docs_unstructured (read in place)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from indexer import Indexer
from indexer.errors import DataError
from indexer.ingestion.readers import PAGES, ReadLimits, UnreadableFile, read_file
from tests.conftest import SHARED_DATA

FIXTURES = SHARED_DATA / "mixed_docs_unstructured"
FILES = FIXTURES / "files"
pytestmark = pytest.mark.shared_data(FILES)

# Files that must be skipped, and the words their reason must contain.
SKIPPED = {
    "empty.txt": "no text",
    "password.pdf": "encrypted",
    "single_table.pdf": "data.ocr is off",  # a scan: no text layer (read by OCR: tests/test_ocr.py)
    "lang_eng_spa_mult.xml": "unsupported",
}


def _fixture_names() -> list[str]:
    if not FILES.is_dir():
        return []
    with (FIXTURES / "MANIFEST.tsv").open() as fh:
        return [Path(row["local_file"]).name for row in csv.DictReader(fh, delimiter="\t")]


def test_the_fixture_set_is_complete() -> None:
    assert len(_fixture_names()) == 54
    assert all((FILES / name).is_file() for name in _fixture_names())


@pytest.mark.parametrize("name", _fixture_names())
def test_every_fixture_reads_or_is_skipped_with_a_reason(name: str) -> None:
    path = FILES / name
    if name in SKIPPED:
        with pytest.raises(UnreadableFile, match=SKIPPED[name]):
            read_file(path, ReadLimits(ocr="off"))
        return
    docs = read_file(path)
    assert docs and all(d.text.strip() for d in docs)
    assert "\x00" not in "".join(d.text for d in docs) and "\ufffd" not in docs[0].text[:2000]


def _text(name: str) -> str:
    return "\n".join(d.text for d in read_file(FILES / name))


def test_encodings_decode_correctly() -> None:
    assert _text("umlauts-non-utf8.md") == _text("umlauts-utf8.md")  # latin-1/cp1252 vs UTF-8
    assert "können" in _text("umlauts-non-utf8.md") and "äöüß" in _text("umlauts-non-utf8.md")
    assert "Der Preis betrug 15,50 €" in _text("fake-html-cp1252.html")
    assert "El niño comió paella" in _text("fake-html-cp1252.html")
    assert _text("fake-text-utf-16.txt").startswith("This is a test document to use for unit tests.")
    assert _text("lang_eng_spa_mult.txt") == _text("lang_eng_spa_mult.md")


def test_formats_keep_pages_sections_and_titles() -> None:
    [pdf] = read_file(FILES / "list-item-example.pdf")  # one document, with where each page starts
    assert [n for _, n in pdf.metadata[PAGES]] == [1, 2] and pdf.metadata["title"] == "Unstructured-test-doc"
    slides = read_file(FILES / "sample-presentation.pptx")
    assert [d.metadata["page"] for d in slides] == [1, 2, 3, 4]
    assert slides[1].metadata["section"] == "This is the first content slide"
    table = _text("fake-power-point-table.pptx")
    assert "Column 1 | Column 2 | Column 3" in table
    book = read_file(FILES / "winter-sports.epub")
    assert book[0].metadata["title"] == "Winter Sports in Switzerland" and len(book) > 3
    assert "All human beings are born free" in _text("lang_eng_spa_mult.epub")
    assert _text("fake-doc.rtf").startswith("My First Heading\nMy first paragraph.")
    assert "All human beings are born free" in _text("lang_eng_spa_mult.rtf")
    assert "Lorem ipsum dolor sit amet." in _text("fake.odt")
    assert "All human beings are born free" in _text("lang_eng_spa_mult.odt")
    assert "These are a few of my favorite things" in _text("simple.docx")
    assert read_file(FILES / "ideas-page.html")[0].metadata["title"] == "How to Get New Ideas"
    scripts = _text("example-with-scripts.html")
    assert "function(" not in scripts and "Russian Offensive Campaign Assessment" in scripts
    [protected] = read_file(FILES / "copy-protected.pdf")  # no user password
    assert [n for _, n in protected.metadata[PAGES]] == [1, 2]
    mail = read_file(FILES / "fake-email.eml")[0]
    assert mail.metadata["title"] == "Test Email" and "Roses are red" in mail.text
    assert "All human beings are born free" in _text("lang_eng_spa_mult.eml")


# A quick subset of the fixtures for builds: every format and edge case, none of the long files.
BUILD_SUBSET = [
    "fake-memo.pdf",
    "list-item-example.pdf",
    "password.pdf",
    "sample-presentation.pptx",
    "lang_eng_spa_mult.epub",
    "fake.odt",
    "fake-doc.rtf",
    "README.md",
    "umlauts-non-utf8.md",
    "fake-text-utf-16.txt",
    "fake-html-cp1252.html",
    "empty.txt",
    "stanley-cups.xlsx",
    "simple.docx",
    "stanley-cups.csv",
    "lang_eng_spa_mult.xml",
]


def _subset_config(make_config) -> Path:
    exclude = sorted(set(_fixture_names()) - set(BUILD_SUBSET))
    return make_config(FILES, data={"input_dir": str(FILES), "exclude": exclude}, llm={"provider": "none"})


@pytest.mark.slow
def test_a_build_of_the_fixtures_lists_skips_and_cites_every_chunk(make_config) -> None:
    ix = Indexer.from_config(_subset_config(make_config))
    summary = ix.build()
    skipped = {s["file"]: s["reason"] for s in summary.skipped}
    assert skipped.keys() == {"password.pdf", "empty.txt", "lang_eng_spa_mult.xml"}
    assert summary.documents == len(BUILD_SUBSET) - 3
    store = ix.index.chunk_store(create=False)
    assert store is not None
    got = store._collection.get(include=["metadatas"])  # every chunk, to check its citation
    metas = got["metadatas"]
    assert len(metas) == summary.chunks
    for meta in metas:
        assert meta["file"] == meta["doc_id"] and (FILES / meta["file"]).is_file()
        assert 0 <= meta["start_char"] < meta["end_char"]
    by_file: dict[str, list[dict]] = {}
    for meta in metas:
        by_file.setdefault(meta["file"], []).append(meta)
    # One document of two pages: its chunks start on page 1 and reach page 2.
    pdf_chunks = by_file["list-item-example.pdf"]
    assert min(m["page"] for m in pdf_chunks) == 1 and max(m["page_end"] for m in pdf_chunks) == 2
    assert all(m["page"] <= m["page_end"] for m in pdf_chunks)
    assert {m["page"] for m in by_file["sample-presentation.pptx"]} == {1, 2, 3, 4}
    assert any(
        m.get("section") == "This is the first content slide" for m in by_file["sample-presentation.pptx"]
    )
    assert {m["section"] for m in by_file["README.md"]} <= {"Example Docs", "XBRL 10-K"}
    assert by_file["fake-memo.pdf"][0]["title"] == "fake-memo"
    assert {m["section"] for m in by_file["stanley-cups.xlsx"]} == {"Stanley Cups", "Stanley Cups Since 67"}

    again = ix.build()  # skipped files are listed again but not re-read or counted as added
    assert again.added == 0 and again.chunks_embedded == 0
    assert {s["file"] for s in again.skipped} == set(skipped)
    assert ix.retrieve("price of the coffee in euros", top_k=1)[0].file == "fake-html-cp1252.html"


def test_strict_makes_skips_fatal(make_config) -> None:
    ix = Indexer.from_config(_subset_config(make_config))
    with pytest.raises(DataError, match=r"--strict: 1 file\(s\) .* lang_eng_spa_mult\.xml"):
        ix.build(strict=True)
    assert ix.index.manifest_file.load() is None  # refused before any work
