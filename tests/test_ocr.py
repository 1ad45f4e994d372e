"""OCR, offline (issue 28, item 4): images and PDF pages without a text layer, read by RapidOCR.

Every image is rendered here from known text (Pillow's bundled font), so the truth is known.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from indexer.errors import ConfigError
from indexer.ingestion import ocr
from indexer.ingestion.ocr import OCR_PAGES
from indexer.ingestion.readers import PAGES, ReadLimits, UnreadableFile, read_file
from tests.adversarial.helpers import assert_one_paragraph_error, cli, small_config
from tests.conftest import SHARED_DATA
from tests.support.images import encoded, render

pytest.importorskip("rapidocr_onnxruntime", reason="needs the ocr extra: pip install 'indexer[ocr]'")

TEXT = [
    "The silica gel desiccant pack in the mast is replaced every six months.",
    "The European mast transmits on 868 MHz with a duty cycle of one percent.",
    "Charge the logger battery to 80 percent before winter storage.",
]
OTHER = ["Receipt 4471: two brass hinges, paid in cash on the third of May."]


def cer(truth: str, got: str) -> float:
    """Character error rate: edit distance over the truth's length, as the extraction benchmark
    counts it (its exact Levenshtein is checked against the textbook one in test_benchmarks.py)."""
    from benchmarks.extraction import char_errors

    errors, length = char_errors(got, truth)
    return errors / max(length, 1)


def image_pdf(*pages: Image.Image | str | None) -> bytes:
    """A PDF of pages: an image (a scan), a text (a text layer, fpdf2), or None (blank)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_font("helvetica", size=11)
    for page in pages:
        pdf.add_page()
        if isinstance(page, str):
            pdf.multi_cell(0, 6, page)
        elif page is not None:
            pdf.image(page.convert("RGB"), x=10, y=10, w=190)
    return bytes(pdf.output())


@pytest.mark.slow
def test_a_png_rendered_from_known_text_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "note.png"
    path.write_bytes(encoded(render(TEXT), "PNG"))
    [doc] = read_file(path)
    assert cer("\n".join(TEXT), doc.text) < 0.02, doc.text
    assert doc.metadata["page"] == 1 and doc.metadata["ocr"] is True
    assert 0.8 < doc.metadata["ocr_confidence"] <= 1.0
    assert "\n\n" in doc.text  # paragraphs stay apart, for the splitter


@pytest.mark.slow
@pytest.mark.parametrize(("suffix", "fmt"), [(".jpg", "JPEG"), (".webp", "WEBP")])
def test_jpeg_and_webp(tmp_path: Path, suffix: str, fmt: str) -> None:
    path = tmp_path / f"scan{suffix}"
    path.write_bytes(encoded(render(OTHER).convert("RGB"), fmt, quality=80))
    [doc] = read_file(path)
    assert cer(OTHER[0], doc.text) < 0.03, doc.text


@pytest.mark.slow
def test_every_frame_of_a_tiff_is_a_page(tmp_path: Path) -> None:
    first, second = render(TEXT[:1]), render(OTHER)
    path = tmp_path / "letter.tiff"
    path.write_bytes(encoded(first, "TIFF", save_all=True, append_images=[second]))
    docs = read_file(path)
    assert [d.metadata["page"] for d in docs] == [1, 2]
    assert cer(TEXT[0], docs[0].text) < 0.03 and cer(OTHER[0], docs[1].text) < 0.03


@pytest.mark.slow
def test_pdf_pages_without_a_text_layer_are_read_by_ocr(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pdf"
    path.write_bytes(image_pdf(" ".join(OTHER), render(TEXT), None))

    notes: list[str] = []
    [auto] = _read(path, ReadLimits(ocr="auto"), notes)  # a PDF is one document (page offsets)
    pages = _pages(auto)
    assert list(pages) == [1, 2]
    assert [page for page, _ in auto.metadata[OCR_PAGES]] == [2]  # page 1's text layer is kept
    assert cer("\n".join(TEXT), pages[2]) < 0.03
    assert len(notes) == 1 and notes[0].startswith("page 3: ")  # the blank page is told, not hidden

    notes = []
    [off] = _read(path, ReadLimits(ocr="off"), notes)
    assert list(_pages(off)) == [1] and OCR_PAGES not in off.metadata
    assert [n.split(":")[0] for n in notes] == ["page 2", "page 3"] and "data.ocr is off" in notes[0]

    [always] = _read(path, ReadLimits(ocr="always"), [])
    assert [page for page, _ in always.metadata[OCR_PAGES]] == [1, 2]
    assert cer(OTHER[0], _pages(always)[1]) < 0.05  # page 1 by OCR too, over its text layer


def _pages(doc: Any) -> dict[int, str]:
    """A PDF document's text page by page (its ``pages`` metadata: where each page starts)."""
    starts = doc.metadata[PAGES]
    ends = [offset for offset, _ in starts[1:]] + [len(doc.text)]
    return {page: doc.text[offset:end].strip() for (offset, page), end in zip(starts, ends, strict=True)}


def _read(path: Path, limits: ReadLimits, notes: list[str]) -> list[Any]:
    from indexer.ingestion.readers import documents_from

    return documents_from(path.read_bytes(), path.suffix, limits, path, notes)


SCAN = SHARED_DATA / "mixed_docs_unstructured" / "files" / "single_table.pdf"


@pytest.mark.slow
@pytest.mark.shared_data(SCAN)
def test_a_real_scanned_pdf_is_read_by_ocr() -> None:
    [doc] = read_file(SCAN)  # a page image of a table, without a text layer
    [(page, confidence)] = doc.metadata[OCR_PAGES]
    assert page == 1 and confidence > 0.8
    for cell in ("64,058", "800.73", "Chipper", "96.20"):
        assert cell in doc.text, doc.text


@pytest.mark.slow
def test_a_scan_only_pdf_with_ocr_off_is_skipped_saying_why(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(image_pdf(render(OTHER)))
    with pytest.raises(UnreadableFile, match=r"data\.ocr is off"):
        _read(path, ReadLimits(ocr="off"), [])
    [doc] = _read(path, ReadLimits(), [])
    assert [page for page, _ in doc.metadata[OCR_PAGES]] == [1] and cer(OTHER[0], doc.text) < 0.05


@pytest.mark.slow
def test_a_build_stores_ocr_metadata_and_notes_empty_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the CLI, with two chunking workers: OCR runs in them (this process never makes the
    engine), chunks carry ``ocr`` and ``ocr_confidence``, and the summary notes the blank page."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "receipt.png").write_bytes(encoded(render(OTHER), "PNG"))
    (docs / "scan.pdf").write_bytes(image_pdf(render(TEXT), None))
    (docs / "plain.txt").write_text("A text file, read as it is.\n")
    config = small_config(tmp_path / "ix", docs, build={"workers": 2})
    monkeypatch.setattr(ocr, "_engine", None)

    result = cli("build", str(config), "--json")
    assert result.returncode == 0, result.stderr
    summary = result.json()
    assert summary["skipped"] == []
    assert summary["notes"] == [{"file": "scan.pdf", "note": "page 2: no text (OCR found none)"}]
    assert ocr._engine is None  # read in the workers

    from indexer import Indexer

    ix = Indexer.from_config(config)
    by_file = {name: (ix.file_passages(name) or [])[0] for name in ("receipt.png", "scan.pdf", "plain.txt")}
    for name in ("receipt.png", "scan.pdf"):
        assert by_file[name].metadata["ocr"] is True
        assert 0.5 < by_file[name].metadata["ocr_confidence"] <= 1.0
    assert "ocr" not in by_file["plain.txt"].metadata
    assert "hinges" in by_file["receipt.png"].text
    found = cli("query", str(config), "brass hinges", "--retrieve-only", "--json", "--top-k", "1")
    [source] = found.json()["sources"]  # a source says its text was read by OCR
    assert source["file"] == "receipt.png" and source["ocr"] is True and source["ocr_confidence"] > 0.5

    text = cli("build", str(config), "--set", "data.ocr=off")
    assert text.returncode == 0, text.stderr
    # data.ocr decides the text of images and PDFs: changing it reads them again, and only them.
    skipped = sorted(line for line in text.stdout.splitlines() if line.startswith("  skipped "))
    assert [line.split(":")[0] for line in skipped] == ["  skipped receipt.png", "  skipped scan.pdf"]
    assert all("data.ocr is off" in line for line in skipped)
    assert "unchanged 1;" in text.stdout  # plain.txt, not read again


def test_ocr_settings_decide_which_files_are_read_again(tmp_path: Path) -> None:
    from indexer.config.loader import load_config
    from indexer.ingestion.plan import chunk_settings_key

    base = load_config(small_config(tmp_path / "ix", tmp_path / "docs"))
    off = base.model_copy(update={"data": base.data.model_copy(update={"ocr": "off"})})
    for suffix in (".pdf", ".png", ".TIF", ".webp"):
        assert chunk_settings_key(base, suffix) != chunk_settings_key(off, suffix)
    assert chunk_settings_key(base, ".txt") == chunk_settings_key(off, ".txt")
    limits = ReadLimits.of(off.data)
    assert (limits.ocr, limits.ocr_languages) == ("off", ("en",))


def test_a_language_the_engine_cannot_read_offline_is_refused(tmp_path: Path) -> None:
    from indexer.config.loader import load_config

    docs = tmp_path / "docs"
    config = small_config(tmp_path / "de", docs, data={"ocr_languages": ["en", "de"]})
    assert_one_paragraph_error(cli("build", str(config)), "data.ocr_languages", "'de'", str(config))
    ok = small_config(tmp_path / "zh", docs, data={"ocr_languages": ["EN", "zh"]})
    assert load_config(ok).data.ocr_languages == ["en", "zh"]
    with pytest.raises(ConfigError, match=r"data\.ocr"):
        load_config(small_config(tmp_path / "bad", docs, data={"ocr": "sometimes"}))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tiff", ".webp"])
def test_a_corrupt_image_is_skipped_in_one_line(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"broken{suffix}"
    fmt = {".png": "PNG", ".jpg": "JPEG", ".tiff": "TIFF", ".webp": "WEBP"}[suffix]
    whole = encoded(render(OTHER).convert("RGB"), fmt)
    path.write_bytes(whole[: len(whole) // 3])
    with pytest.raises(UnreadableFile) as caught:
        read_file(path)
    assert "\n" not in str(caught.value) and str(caught.value)
    (tmp_path / f"noise{suffix}").write_bytes(b"\x89PNG not really an image at all" * 10)
    reasons = []
    for _ in range(2):
        with pytest.raises(UnreadableFile, match="not a readable image") as noise:
            read_file(tmp_path / f"noise{suffix}")
        reasons.append(str(noise.value))
    # The same file, the same reason (no object address in it): a warning prints once per reason.
    assert reasons[0] == reasons[1] and " at 0x" not in reasons[0], reasons


def test_images_with_ocr_off_are_skipped_saying_why(tmp_path: Path) -> None:
    path = tmp_path / "receipt.png"
    path.write_bytes(encoded(render(OTHER), "PNG"))
    with pytest.raises(UnreadableFile, match=r"data\.ocr is off"):
        read_file(path, ReadLimits(ocr="off"))


@pytest.mark.slow
def test_a_100_megapixel_image_is_read_in_bounded_memory_and_time(tmp_path: Path) -> None:
    """10,000 × 10,000 pixels: scaled down before OCR, in a process of its own so its peak memory
    is its own."""
    path = tmp_path / "huge.png"
    image = Image.new("L", (10_000, 10_000), 255)
    image.paste(render(OTHER, size=320, width=9_000), (200, 200))
    image.save(path, compress_level=1)
    del image
    probe = textwrap.dedent(
        f"""
        import json, resource, time
        from pathlib import Path
        from indexer.ingestion.readers import read_file
        start = time.process_time()
        docs = read_file(Path({str(path)!r}))
        print(json.dumps({{
            "text": docs[0].text,
            "cpu_s": time.process_time() - start,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert "hinges" in got["text"]
    # The decoded image is 100 MB in grey (Pillow holds it once); the detector's activations on a
    # page scaled to ocr.MAX_SIDE some 1 GB, whatever the image's size: measured 1.2 GB alone, and
    # once 3.5 GB in a whole-suite run (onnxruntime's arena, not reproduced alone). At full size,
    # 10,000 pixels a side, the activations would be some 18 times 1 GB: the bound tells them apart.
    assert got["peak_mib"] < 6000, got
    assert got["cpu_s"] < 60, got


def test_an_image_past_the_decompression_bomb_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    # A PNG whose header claims 20,000 × 20,000 pixels (400 MP): refused before any pixel is decoded.
    small = bytearray(encoded(Image.new("1", (8, 8), 1), "PNG"))
    small[16:24] = struct.pack(">II", 20_000, 20_000)  # IHDR's width and height
    small[29:33] = struct.pack(">I", zlib.crc32(bytes(small[12:29])))
    path.write_bytes(bytes(small))
    with pytest.raises(UnreadableFile, match="too large"):
        read_file(path)


@pytest.fixture
def fault_no_ocr_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``ocr`` extra not installed: importing its engine fails (a fault no test install has)."""
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    monkeypatch.setattr(ocr, "_engine", None)


def test_without_the_ocr_extra_images_name_it_and_pdfs_note_it(
    tmp_path: Path, fault_no_ocr_extra: None
) -> None:
    path = tmp_path / "receipt.png"
    path.write_bytes(encoded(render(OTHER), "PNG"))
    with pytest.raises(UnreadableFile, match=r"pip install 'indexer\[ocr\]'"):
        read_file(path)
    pdf = tmp_path / "mixed.pdf"
    pdf.write_bytes(image_pdf(" ".join(TEXT), None))
    notes: list[str] = []
    [doc] = _read(pdf, ReadLimits(), notes)
    assert doc.metadata["page"] == 1
    assert len(notes) == 1 and notes[0].startswith("page 2: ") and "pip install 'indexer[ocr]'" in notes[0]


def test_importing_the_readers_loads_no_ocr_engine() -> None:
    probe = (
        "import sys, indexer.ingestion.readers, indexer.ingestion.ocr as o; "
        "print(o._engine is None, 'rapidocr_onnxruntime' in sys.modules, 'onnxruntime' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["True", "False", "False"]
