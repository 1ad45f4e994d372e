"""Images (``.png``, ``.jpg``, ``.tiff``, ``.webp``) read by OCR (``ingestion/ocr.py``): one
document per frame, numbered as pages (a multi-page TIFF is a scanned document).

Pillow decodes them. Its decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, some 90
megapixels, refused outright at twice that) bounds what one image may make it hold; a larger image
than OCR uses is scaled down first, by the JPEG decoder itself where it can (``ocr.MAX_SIDE``).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from indexer.ingestion.ocr import NO_TEXT, OCR_EXTRA, OcrUnavailable, ocr_image, ocr_metadata

if TYPE_CHECKING:
    from llama_index.core.schema import Document

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
OCR_SUFFIXES = (".pdf", *IMAGE_SUFFIXES)
"""Files whose text ``data.ocr`` and ``data.ocr_languages`` decide (part of their settings key)."""
MAX_FRAMES = 1000
"""Frames of one image read at most (a TIFF may hold any number): bounds a build's time."""


def read_image(raw: bytes, mode: str, languages: Sequence[str]) -> list[Document]:
    """One document per frame of the image in ``raw``, its text read by OCR."""
    from llama_index.core.schema import Document
    from PIL import Image, ImageSequence, UnidentifiedImageError

    from indexer.ingestion.readers import UnreadableFile, failure_reason

    if mode == "off":
        raise UnreadableFile("an image is read by OCR, and data.ocr is off")
    try:
        with warnings.catch_warnings():
            # Between the limit and twice it, Pillow only warns: bounded still, and read.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            docs = []
            for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
                if number > MAX_FRAMES:
                    break
                found = ocr_image(frame, languages)
                metadata: dict[str, Any] = {"page": number}
                if found.text.strip():
                    metadata.update(ocr_metadata(found))
                else:
                    metadata[NO_TEXT] = [(number, "no text (OCR found none)")]
                docs.append(Document(text=found.text, metadata=metadata))
    except OcrUnavailable:
        raise UnreadableFile(f"reading images needs the 'ocr' extra: {OCR_EXTRA}") from None
    except Image.DecompressionBombError as exc:
        raise UnreadableFile(failure_reason(exc, "image too large")) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports a truncated or damaged file as OSError, SyntaxError or ValueError.
        raise UnreadableFile(failure_reason(exc, "not a readable image")) from None
    return docs
