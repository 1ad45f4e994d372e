"""Runaway answers: a small model that has said its piece often goes on, writing the next turn of
a conversation nobody asked for ("Question: ...", "User: ...") or repeating itself
("2024-03-20, 2024-03-20, ..."). End-of-turn tokens do not catch either, so the text is watched as
it streams, and generation stops at the first sign.

The watch works on text, not token ids, so it is the same for every backend and every way in
(CLI, Python, HTTP, OpenAI, MCP). While streaming, the start of a line that could still become an
invented turn is held back until it is clear, so a stopped turn is never shown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Line starts that open a turn of a conversation: the usual transcript labels, and the role names
# of the chat templates (ChatML, Llama 3 and Phi-3: user/assistant; Gemma adds "model", see
# ``turn_labels``). "System:" and "Model:" also begin ordinary lines of technical documents, so they
# count only where the template itself uses them.
TURN_LABELS: tuple[str, ...] = (
    "Question:",
    "Q:",
    "User:",
    "Human:",
    "Assistant:",
    "user:",
    "assistant:",
    "## ",
    "### ",
)
# Markdown headings: an answer has no sections of its own, but a small model that has answered
# often opens one ("## What is the firmware?") and writes on about something else.
_HEADINGS = ("## ", "### ")
_ROLE_RE = re.compile(r"""['"](system|model)['"]""")
_LINE_INDENT = " \t"
# The unit of a loop: a word, a number, or a run of punctuation ("---" is one unit, so a markdown
# table's rule is not a loop of dashes).
_UNIT_RE = re.compile(r"\w+|[^\w\s]+")
# A loop: the last units of the text are one block repeated, at least LOOP_REPEATS times in a row
# and over at least LOOP_MIN_UNITS units (so "no, no, no" is not one, but a date written 6 times
# over is). Blocks up to LOOP_MAX_BLOCK units long are looked for: sentences repeat too.
LOOP_REPEATS = 4
LOOP_MIN_UNITS = 32
LOOP_MAX_BLOCK = 48
# Enough text for the longest loop looked for: answers are watched piece by piece, so this bounds
# the work per piece whatever the answer's length.
_LOOP_TAIL_CHARS = 3000


def turn_labels(template_source: str | None) -> tuple[str, ...]:
    """The labels for a model whose chat template is ``template_source`` (None: not known)."""
    roles = sorted(set(_ROLE_RE.findall(template_source or "")) - {"system"})
    return TURN_LABELS + tuple(label for role in roles for label in (f"{role.capitalize()}:", f"{role}:"))


def invented_turn(text: str, labels: Sequence[str] = TURN_LABELS, start: int = 0) -> tuple[int, str] | None:
    """Where the first invented turn begins in ``text`` (the offset of its line, newline included)
    and its label, or None; lines are looked at from the one at ``start`` on. A heading ("## ",
    "### ") counts only after the first line, where an answer would not put one."""
    start = text.rfind("\n", 0, start) + 1
    while True:
        line_end = text.find("\n", start)
        line = text[start : len(text) if line_end == -1 else line_end].lstrip(_LINE_INDENT)
        for label in labels:
            if line.startswith(label) and (start > 0 or label not in _HEADINGS):
                return max(start - 1, 0), label.strip()
        if line_end == -1:
            return None
        start = line_end + 1


def could_become_turn(line: str, labels: Sequence[str] = TURN_LABELS) -> bool:
    """Whether an unfinished last line may still grow into a turn label."""
    line = line.lstrip(_LINE_INDENT)
    return any(label.startswith(line) for label in labels)


def repeated_block(text: str) -> tuple[str, int] | None:
    """The block of units the end of ``text`` repeats, and how many times in a row, when that is a
    loop (see ``LOOP_REPEATS``); else None."""
    tail = text[-_LOOP_TAIL_CHARS:]
    found = list(_UNIT_RE.finditer(tail))
    units = [m.group(0) for m in found]
    for size in range(1, LOOP_MAX_BLOCK + 1):
        if size * LOOP_REPEATS > len(units):
            break
        block = units[-size:]
        repeats = 1
        while (repeats + 1) * size <= len(units) and units[-(repeats + 1) * size : -repeats * size] == block:
            repeats += 1
        if repeats >= LOOP_REPEATS and repeats * size >= LOOP_MIN_UNITS:
            return tail[found[-size].start() : found[-1].end()], repeats
    return None


class RunawayGuard:
    """Feed it the text pieces of an answer; it returns what may be shown now, and sets ``reason``
    (and stops returning text) once the answer runs away."""

    def __init__(self, labels: Sequence[str] = TURN_LABELS) -> None:
        self.labels = labels
        self.text = ""
        self.shown = 0  # characters of ``text`` returned so far
        self.reason: str | None = None

    def feed(self, piece: str) -> str:
        if self.reason is not None:
            return ""
        checked = len(self.text)  # lines that ended before this piece were looked at already
        self.text += piece
        turn = invented_turn(self.text, self.labels, checked)
        if turn is not None:
            at, label = turn
            self.reason = f"stopped where the model began a turn of its own ({label!r})"
            return self._show(min(at, len(self.text)))
        loop = repeated_block(self.text)
        if loop is not None:
            block, repeats = loop
            shown_block = block if len(block) <= 40 else block[:37] + "..."
            self.reason = f"stopped a loop: the answer repeated {shown_block!r} {repeats} times in a row"
            return self._show(len(self.text))
        last_newline = self.text.rfind("\n")
        last_line = self.text[last_newline + 1 :]
        if could_become_turn(last_line, self.labels):
            # Hold the line (and the newline before it) until it is clearly not a turn.
            return self._show(max(last_newline, 0) if last_newline >= 0 else 0)
        return self._show(len(self.text))

    def finish(self) -> str:
        """What is still held back once the answer has ended of its own accord."""
        if self.reason is not None:
            return ""
        return self._show(len(self.text))

    def _show(self, end: int) -> str:
        if end <= self.shown:
            return ""
        piece, self.shown = self.text[self.shown : end], end
        return piece
