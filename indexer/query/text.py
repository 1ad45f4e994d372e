"""Text a question (or a filter, or a chat turn) must be before it reaches a tokenizer or the store.

Python strings may hold lone surrogates, which are no Unicode characters: JSON carries them as
``"\\ud800"``, and Python turns the bytes of a non-UTF-8 argument or input line into
``\\udc80``-``\\udcff`` (surrogateescape). The tokenizers and Chroma fail on them deep inside, so
every entry point checks here first and names the field.
"""

from __future__ import annotations

import math
from typing import Any

# surrogateescape maps an undecodable byte B to U+DC00 + B (B >= 0x80).
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def unicode_problem(text: str) -> str | None:
    """What makes ``text`` unusable (callers prefix the field's name); ``None`` when it is valid
    Unicode text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        message = (
            f"contains a lone surrogate ({char!r} at character {exc.start}), which is not valid Unicode text"
        )
        if ord(char) in _ESCAPED_BYTES:
            message += (
                f"; it stands for the byte 0x{ord(char) - 0xDC00:02x}, which is not UTF-8: give the "
                "text in UTF-8"
            )
        return message
    return None


def value_problem(value: Any) -> str | None:
    """``unicode_problem`` for a string; a NaN or an infinity, which JSON parsers accept and no
    metadata value equals, for a number."""
    if isinstance(value, str):
        return unicode_problem(value)
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    return None
