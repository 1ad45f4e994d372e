"""Text from documents (file names, passages, titles, answers quoting them) made safe to print.

A file named ``\\x1b]0;owned\\x07.txt`` or a passage holding escape sequences would otherwise drive
the user's terminal: retitle it, move the cursor, rewrite what was printed, or on some terminals
answer back with input. Control characters become visible escapes (``\\x1b``), as do the Unicode
format characters that reorder text (right-to-left overrides) or hide it (zero-width). Where text
goes through rich, its markup (``[bold]``) is escaped too, so a document cannot style the output.
"""

from __future__ import annotations

import re
import unicodedata

# C0 and C1 controls and DEL; newline and tab are decided per call.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_ONE_LINE_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _format_chars(text: str) -> str:
    # Category Cf: bidi overrides and isolates, zero-width characters, soft hyphen.
    if text.isascii():
        return text
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) == "Cf" else c for c in text)


def printable(text: str, *, multiline: bool = False, limit: int | None = None) -> str:
    """``text`` with nothing a terminal would act on; newlines and tabs survive with
    ``multiline``. ``limit``: at most that many characters, ending in ``...`` when cut."""
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 3)] + "..."
    pattern = _CONTROL_RE if multiline else _CONTROL_ONE_LINE_RE
    return _format_chars(pattern.sub(_visible, text))


def rich_safe(text: str, *, multiline: bool = False) -> str:
    """As ``printable``, for text that rich renders: its markup is escaped too."""
    from rich.markup import escape

    return escape(printable(text, multiline=multiline))
