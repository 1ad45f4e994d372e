"""OCR, offline: the text of an image, or of a PDF page without a usable text layer (``data.ocr``).

The engine is RapidOCR (``rapidocr-onnxruntime``, the ``ocr`` extra): PaddleOCR's PP-OCRv4
detection and recognition models run by onnxruntime, shipped inside the wheel, so nothing is
downloaded, ever (the package holds no download code). Measured against Debian's Tesseract 5.3
(``pytesseract``, eng) on A4 pages rendered from known text (three pages of Paul Graham's essay,
DejaVu Sans 11 pt) and on the real scan ``single_table.pdf``; character error rate with whitespace
runs as one space, CPU seconds per page (``getrusage``, one thread):

==============================================  ========  ========  ===============
engine                                          150 dpi   300 dpi   CPU s/page
==============================================  ========  ========  ===============
RapidOCR, as configured here (no cls, 2400 px)  1.38 %    0.15 %    7.4 / 8.5
RapidOCR, its defaults (cls on, 2000 px)        34 %      22 %      ~10
Tesseract 5 (eng, default psm)                  0.80 %    0.77 %    6.1 / 7.3
real scan ``single_table.pdf`` (a table)        RapidOCR 6.1 s, Tesseract 0.8 s
==============================================  ========  ========  ===============

RapidOCR reads 300-dpi scans five times more accurately, meets the 3 % goal at 150 dpi too, and
installs from PyPI with the project, models included, on every node of a Ray cluster alike
(Tesseract needs a system package and a traineddata file per language); it costs some 1.2 times
Tesseract's CPU on a page of prose, more on a sparse page. Its text-direction classifier is off:
on upright pages it turned whole lines upside down and lost them (the 22-34 % above); scanners
deliver pages upright.

The engine is made once per process, on first use (a build's chunking workers and Ray actors each
make their own); importing this module loads nothing heavy.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

OCR_EXTRA = "pip install 'indexer[ocr]'"
OCR_MODES = ("auto", "off", "always")
LANGUAGES = {"en": "English", "zh": "Chinese (simplified)"}
"""``data.ocr_languages`` the engine reads offline: its one PP-OCRv4 recognition model ("ch") reads
Latin letters, digits and Chinese characters. Other scripts have models of their own, which the
wheel does not ship."""

PDF_DPI = 200
"""PDF pages are rendered at this resolution for OCR: 11 pt text is then some 30 pixels high,
where the recognition model (48-pixel lines) reads best; more costs time and gains nothing once
the detector's side limit (``MAX_SIDE``) scales the page down again."""
MAX_SIDE = 2400
"""An image is scaled down to this many pixels on its longest side before OCR (an A4 page at
200 dpi is 2339 pixels high): bounds the detector's time and memory whatever the image's size."""
MIN_PAGE_CHARS = 16
"""A PDF page whose text layer has fewer printable, non-space characters than this has no usable
text layer: ``data.ocr: auto`` reads it by OCR. A scanned page often carries a stray word or a
page number in its text layer, never a paragraph."""

_lock = threading.Lock()
_engine: Any = None


class OcrUnavailable(Exception):
    """The ``ocr`` extra is not installed; the message says how to install it."""


@dataclass(frozen=True)
class OcrText:
    text: str
    confidence: float
    """The engine's mean confidence per recognised character, 0 to 1 (0 when nothing was found)."""


def check_languages(languages: Sequence[str]) -> list[str]:
    """``languages`` as the engine knows them, or a ``ValueError`` naming one it cannot read offline."""
    normalised = []
    for language in languages:
        code = str(language).strip().lower()
        if code not in LANGUAGES:
            known = ", ".join(f"{c} ({name})" for c, name in LANGUAGES.items())
            raise ValueError(
                f"{language!r} cannot be read by the bundled OCR engine offline (RapidOCR's models read "
                f"{known}); remove it, or set data.ocr: off"
            )
        normalised.append(code)
    if not normalised:
        raise ValueError("must list at least one language, e.g. [en]")
    return normalised


def engine() -> Any:
    """The process's RapidOCR engine, made on first use; ``OcrUnavailable`` without the extra."""
    global _engine
    with _lock:
        if _engine is None:
            try:
                from rapidocr_onnxruntime import RapidOCR  # type: ignore[import-untyped]
            except ImportError as exc:
                raise OcrUnavailable(f"OCR needs the 'ocr' extra: {OCR_EXTRA} ({exc})") from None
            # One thread: a build reads files in several worker processes already, and
            # onnxruntime's own pool would spin on the cores they and the encoder use.
            _engine = RapidOCR(
                use_cls=False,
                max_side_len=MAX_SIDE,
                intra_op_num_threads=1,
                inter_op_num_threads=1,
            )
        return _engine


def ocr_image(image: Image, languages: Sequence[str] = ("en",)) -> OcrText:
    """The text on ``image`` (any PIL mode or size), lines in reading order and paragraphs apart."""
    import numpy as np

    check_languages(languages)  # one model reads them all; a bad list fails here as in the config
    pixels = np.asarray(_rgb(_bounded(image)))
    result, _ = engine()(pixels)
    return _assemble(result or [])


def ocr_pdf_pages(raw: bytes, pages: Sequence[int], languages: Sequence[str] = ("en",)) -> dict[int, OcrText]:
    """OCR of the given pages (numbered from 1) of the PDF in ``raw``, each rendered at
    ``PDF_DPI`` by pdfium."""
    import pypdfium2  # type: ignore[import-untyped]

    found: dict[int, OcrText] = {}
    pdf = pypdfium2.PdfDocument(raw)
    try:
        for number in pages:
            page = pdf[number - 1]
            try:
                width, height = page.get_size()
                # A page of unusual size (a poster, a banner) is rendered no larger than OCR uses.
                scale = min(PDF_DPI / 72, MAX_SIDE / max(width, height, 1.0))
                image = page.render(scale=scale, grayscale=True).to_pil()
            finally:
                page.close()
            found[number] = ocr_image(image, languages)
    finally:
        pdf.close()
    return found


def usable_text(text: str) -> bool:
    """Whether a PDF page's text layer is worth keeping (``MIN_PAGE_CHARS``)."""
    return sum(1 for c in text if c.isprintable() and not c.isspace()) >= MIN_PAGE_CHARS


def pages_to_ocr(texts: Sequence[str], mode: str) -> list[int]:
    """The pages (numbered from 1) of a PDF whose text layers are ``texts`` that ``data.ocr``
    (``mode``) reads by OCR."""
    if mode == "off":
        return []
    return [n for n, text in enumerate(texts, start=1) if mode == "always" or not usable_text(text)]


NO_TEXT = "no_text"
"""Document metadata: the pages (or frames) left without text and why, as ``(page, reason)``
pairs; listed in the build summary's notes (``readers.documents_from``), never stored."""
OCR_PAGES = "ocr_pages"
"""Document metadata of a PDF: ``(page, confidence)`` of each page whose text OCR read; a chunk
over any of them carries ``ocr`` and their mean confidence (``chunking.chunk_document``)."""


@dataclass
class OcrPages:
    """A PDF's page texts after OCR (``data.ocr``): the OCR confidence of each page it read, and
    why each page still without text has none."""

    texts: list[str]
    confidence: dict[int, float]
    no_text: dict[int, str]


def ocr_pdf_texts(raw: bytes, texts: Sequence[str], mode: str, languages: Sequence[str]) -> OcrPages:
    """The page texts (``texts``, one per page of the PDF in ``raw``) with the pages ``mode`` reads
    by OCR holding OCR's text, and every page left without text saying why."""
    pages = pages_to_ocr(texts, mode)
    try:
        found = ocr_pdf_pages(raw, pages, languages) if pages else {}
        missing = ""
    except OcrUnavailable:
        found, missing = {}, f"no text layer, and OCR needs the 'ocr' extra: {OCR_EXTRA}"
    result = OcrPages(list(texts), {}, {})
    for number in range(1, len(texts) + 1):
        got = found.get(number)
        if got is not None and got.text.strip():
            result.texts[number - 1] = got.text
            result.confidence[number] = round(got.confidence, 3)
        elif not result.texts[number - 1].strip():
            if mode == "off":
                result.no_text[number] = "no text layer, and data.ocr is off"
            elif got is not None:
                result.no_text[number] = "no text (OCR found none)"
            else:
                result.no_text[number] = missing or "no text"
    return result


def ocr_metadata(found: OcrText) -> dict[str, Any]:
    """What a chunk of OCR text carries: ``ocr: true`` and the engine's mean confidence."""
    return {"ocr": True, "ocr_confidence": round(found.confidence, 3)}


def _bounded(image: Image) -> Image:
    if max(image.size) > MAX_SIDE:
        image = image.copy() if image.mode == "P" else image
        image.thumbnail((MAX_SIDE, MAX_SIDE))  # for a JPEG, decoded at the smaller size (draft)
    return image


def _rgb(image: Image) -> Image:
    """RGB on white: transparency would otherwise turn black, and black text with it."""
    from PIL import Image as PILImage

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        import numpy as np

        values = np.asarray(image, dtype=np.float64)
        span = float(values.max() - values.min()) or 1.0
        image = PILImage.fromarray(((values - values.min()) * (255.0 / span)).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = PILImage.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


def _assemble(result: list[Any]) -> OcrText:
    """Text boxes (four corners, text, score) as lines, left to right, and paragraphs, where the
    gap between two lines is well over a line's height."""
    boxes = []
    for corners, text, score in result:
        if not str(text).strip():
            continue
        ys = [p[1] for p in corners]
        xs = [p[0] for p in corners]
        boxes.append((min(ys), max(ys), min(xs), str(text).strip(), float(score)))
    if not boxes:
        return OcrText("", 0.0)
    boxes.sort(key=lambda b: (b[0], b[2]))
    lines: list[list[Any]] = []  # [top, bottom, [(x, text)]]
    for top, bottom, x, text, _ in boxes:
        middle = (top + bottom) / 2
        line = next((ln for ln in reversed(lines[-3:]) if ln[0] <= middle <= ln[1]), None)
        if line is None:
            lines.append([top, bottom, [(x, text)]])
        else:
            line[2].append((x, text))
    heights = sorted(ln[1] - ln[0] for ln in lines)
    height = heights[len(heights) // 2]
    parts: list[str] = []
    previous_bottom: float | None = None
    for top, bottom, words in lines:
        if previous_bottom is not None:
            parts.append("\n\n" if top - previous_bottom > 1.2 * height else "\n")
        parts.append(" ".join(t for _, t in sorted(words)))
        previous_bottom = bottom
    chars = sum(len(b[3]) for b in boxes)
    confidence = sum(b[4] * len(b[3]) for b in boxes) / chars
    return OcrText("".join(parts), min(1.0, max(0.0, confidence)) if math.isfinite(confidence) else 0.0)
