"""Images of known text, for the OCR tests (text rendered with Pillow's own font)."""

from __future__ import annotations

import io
import textwrap
from typing import Any

from PIL import Image, ImageDraw, ImageFont


def render(lines: list[str], *, size: int = 32, width: int = 1500) -> Image.Image:
    """Black text on white, ``size`` pixels high (11 pt at some 200 dpi), a blank line between paragraphs."""
    font = ImageFont.load_default(size=size)
    wrapped = [row for line in lines for row in [*textwrap.wrap(line, 60), ""]]
    image = Image.new("L", (width, 2 * size + int(1.5 * size) * len(wrapped)), 255)
    draw = ImageDraw.Draw(image)
    for n, row in enumerate(wrapped):
        draw.text((size, size + n * int(1.5 * size)), row, font=font, fill=0)
    return image


def encoded(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()
