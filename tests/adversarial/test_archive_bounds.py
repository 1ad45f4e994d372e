"""Issue 30, item 5: zip-based documents (DOCX, PPTX, XLSX, EPUB, ODT) are bounded by their inflated
size and their inflation ratio, read from the central directory before anything is inflated, and
every file's extracted text by ``data.max_document_chars``; each is skipped and listed past a bound.

The archives are made here, small, with the bounds lowered to match, so the tests stay fast.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from indexer.ingestion.readers import ReadLimits, UnreadableFile, read_file
from tests.adversarial.helpers import cli, small_config, write_docs

PARAGRAPH = "<w:p><w:r><w:t>The mast heater runs below minus twenty degrees.</w:t></w:r></w:p>"


def _docx(paragraphs: int, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    body = PARAGRAPH * paragraphs
    document = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        f"<w:body>{body}</w:body></w:document>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Override PartName="/word/document.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>',
        )
        # The package's relationships name its main part, as in every file Word writes.
        archive.writestr(
            "_rels/.rels",
            '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
            'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
            "</Relationships>",
        )
        archive.writestr("word/document.xml", document)
    return buffer.getvalue()


@pytest.mark.slow
def test_archive_and_text_bounds_skip_files_with_a_reason(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    (docs / "ok.docx").write_bytes(_docx(5))
    bomb = _docx(100_000)  # 8.6 MB of XML in ~40 KB: inflates ~200 times its size
    (docs / "bomb.docx").write_bytes(bomb)
    (docs / "big.docx").write_bytes(_docx(3_000, zipfile.ZIP_STORED))  # ~260 KB, stored: ratio 1
    (docs / "long.txt").write_text("The wind vane turns. " * 1_000)  # 21,000 characters
    config = small_config(
        tmp_path / "cfg",
        docs,
        data={
            "input_dir": str(docs),
            "max_inflated_bytes": 200_000,
            "max_inflation_ratio": 50,
            "max_document_chars": 20_000,
        },
    )

    built = cli("build", str(config), "--json")
    assert built.returncode == 0, built.stderr
    summary = built.json()
    reasons = {s["file"]: s["reason"] for s in summary["skipped"]}
    assert set(reasons) == {"bomb.docx", "big.docx", "long.txt"}
    assert "more than data.max_inflated_bytes (200000)" in reasons["bomb.docx"]
    assert "more than data.max_inflated_bytes (200000)" in reasons["big.docx"]
    assert reasons["long.txt"] == "21000 characters of text, more than data.max_document_chars (20000)"
    assert summary["documents"] == 4  # the three sample files and ok.docx
    hit = cli("query", str(config), "When does the mast heater run?", "--retrieve-only", "--json").json()
    assert hit["sources"][0]["file"] == "ok.docx"

    # Unchanged files skipped for a bound are read again once that bound is raised.
    raised = ("--set", "data.max_inflated_bytes=400000", "--set", "data.max_document_chars=200000")
    again = cli("build", str(config), *raised, "--json").json()
    assert again["changes"]["added"] == ["big.docx", "long.txt"]
    assert [s["file"] for s in again["skipped"]] == ["bomb.docx"]
    assert "more than data.max_inflated_bytes (400000)" in again["skipped"][0]["reason"]
    assert cli("build", str(config), *raised, "--json").json()["changes"]["added"] == []


def test_the_ratio_bound_alone_refuses_a_bomb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.docx"
    path.write_bytes(_docx(20_000))  # 1.6 MB of XML in ~6 KB: inflates ~250 times; read whole below
    ratio = r"inflates \d+ times its size .* data\.max_inflation_ratio \(100\)"
    with pytest.raises(UnreadableFile, match=ratio):
        read_file(path, ReadLimits(max_inflated_bytes=10**12))
    assert read_file(path, ReadLimits(max_inflation_ratio=1_000))  # within both bounds: read


@pytest.mark.parametrize("suffix", [".docx", ".pptx", ".epub", ".odt", ".xlsx", ".ods"])
def test_every_archive_format_is_checked_before_its_reader(tmp_path: Path, suffix: str) -> None:
    # The check needs no reader of the format (nor the 'formats' extra): it reads the directory.
    path = tmp_path / f"bomb{suffix}"
    path.write_bytes(_docx(100_000))
    with pytest.raises(UnreadableFile, match=r"data\.max_inflation_ratio"):
        read_file(path)
