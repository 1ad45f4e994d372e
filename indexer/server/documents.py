"""A cited PDF page as a PNG, rendered on the server with pypdfium2, the cited passage highlighted.

The passage is found on the page word by word (``difflib`` over the page's words as pdfium reads
them, so line breaks, hyphenation and a table rendered as Markdown still match), and each run of
matched words becomes a translucent box over its line. The image is bounded (``MAX_WIDTH`` pixels
wide, ``MAX_PIXELS`` in all, whatever the page's size) and the last few are kept in memory, keyed
by the file's size and modification time so a rewritten file is rendered again.
"""

from __future__ import annotations

import ctypes
import difflib
import hashlib
import io
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

DEFAULT_WIDTH = 900
MIN_WIDTH = 200
MAX_WIDTH = 1600
# A page far taller than wide (a receipt roll, a poster) is drawn smaller, never bigger than this.
MAX_PIXELS = 1600 * 2400
# The highlight: translucent yellow over the passage's lines.
HIGHLIGHT = (255, 214, 0, 96)
OUTLINE = (230, 160, 0, 200)
# Matched runs shorter than this many words are chance (a "the" here and there), unless the
# passage itself is that short.
_MIN_RUN_WORDS = 3
_CACHE_SIZE = 24
_WORD_RE = re.compile(r"\w+")

# pdfium is not thread-safe: one page is rendered at a time in this process.
_LOCK = threading.Lock()
_CACHE: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()


class PageError(Exception):
    """The page cannot be shown: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def page_png(path: Path, page: int, passage: str = "", width: int = DEFAULT_WIDTH) -> bytes:
    """Page ``page`` (from 1) of the PDF at ``path`` as a PNG ``width`` pixels wide (bounded),
    with ``passage`` highlighted where it is found on it."""
    width = max(MIN_WIDTH, min(MAX_WIDTH, width))
    info = path.stat()
    key = (
        str(path),
        info.st_size,
        info.st_mtime_ns,
        page,
        width,
        hashlib.sha256(passage.encode()).hexdigest(),
    )
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            _CACHE.move_to_end(key)
            return cached
        png = _render(path.read_bytes(), page, passage, width)
        _CACHE[key] = png
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return png


def _render(raw: bytes, number: int, passage: str, width: int) -> bytes:
    import pypdfium2 as pdfium  # type: ignore[import-untyped]
    from PIL import Image, ImageDraw

    try:
        pdf = pdfium.PdfDocument(raw)
    except pdfium.PdfiumError as exc:
        raise PageError(422, f"the PDF cannot be rendered ({exc})") from None
    try:
        if not 1 <= number <= len(pdf):
            raise PageError(404, f"page {number} is not in this PDF (it has {len(pdf)} pages)")
        page = pdf[number - 1]
        page_width, page_height = page.get_size()  # as shown, the page's rotation applied
        scale = width / max(page_width, 1.0)
        scale = min(scale, (MAX_PIXELS / max(page_width * page_height, 1.0)) ** 0.5)
        image = page.render(scale=scale).to_pil().convert("RGB")
        rects = _passage_rects(page, passage, image.size) if passage.strip() else []
        if rects:
            overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
            draw = ImageDraw.Draw(overlay)
            for box in rects:
                draw.rectangle(box, fill=HIGHLIGHT, outline=OUTLINE, width=2)
            image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=False)
        return out.getvalue()
    finally:
        pdf.close()


def _passage_rects(page: Any, passage: str, size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Pixel boxes (left, top, right, bottom) over the lines of the page where the passage is."""
    import pypdfium2.raw as pdfium_c  # type: ignore[import-untyped]

    textpage = page.get_textpage()
    words: list[tuple[str, int, int]] = []  # (word, first char index, last char index)
    current: list[str] = []
    start = 0
    count = textpage.count_chars()
    for index in range(count + 1):
        char = chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, index)) if index < count else " "
        if char.isalnum() or char == "_":
            if not current:
                start = index
            current.append(char)
        elif current:
            words.append(("".join(current).lower(), start, index - 1))
            current = []
    wanted = [w.lower() for w in _WORD_RE.findall(passage)]
    if not words or not wanted:
        return []
    matcher = difflib.SequenceMatcher(None, wanted, [w for w, _, _ in words], autojunk=False)
    least = min(_MIN_RUN_WORDS, len(wanted))
    matched = [j for _, j, n in matcher.get_matching_blocks() if n >= least for j in range(j, j + n)]
    boxes: list[list[float]] = []  # page points: left, bottom, right, top, of each line's run
    for j in matched:
        _, first, last = words[j]
        left, bottom, right, top = _char_box(textpage, first)
        for index in range(first + 1, last + 1):
            l2, b2, r2, t2 = _char_box(textpage, index)
            left, bottom, right, top = min(left, l2), min(bottom, b2), max(right, r2), max(top, t2)
        line = boxes[-1] if boxes else None
        if line is not None and min(line[3], top) - max(line[1], bottom) > 0.5 * min(
            line[3] - line[1], top - bottom
        ):
            line[:] = [min(line[0], left), min(line[1], bottom), max(line[2], right), max(line[3], top)]
        else:
            boxes.append([left, bottom, right, top])
    return [_to_pixels(page, box, size) for box in boxes]


def _char_box(textpage: Any, index: int) -> tuple[float, float, float, float]:
    left, bottom, right, top = textpage.get_charbox(index, loose=True)
    return left, bottom, right, top


def _to_pixels(page: Any, box: list[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A box in page points as a box in the rendered image's pixels: pdfium maps the points (its
    own transform, so a rotated or cropped page maps right), two corners and the box between."""
    import pypdfium2.raw as pdfium_c  # type: ignore[import-untyped]

    corners = []
    for x, y in ((box[0], box[1]), (box[2], box[3])):
        dx, dy = ctypes.c_int(), ctypes.c_int()
        pdfium_c.FPDF_PageToDevice(
            page.raw, 0, 0, size[0], size[1], 0, x, y, ctypes.byref(dx), ctypes.byref(dy)
        )
        corners.append((dx.value, dy.value))
    (x0, y0), (x1, y1) = corners
    pad = 2
    return min(x0, x1) - pad, min(y0, y1) - pad, max(x0, x1) + pad, max(y0, y1) + pad
