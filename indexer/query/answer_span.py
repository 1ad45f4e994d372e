"""The shortest span of a passage that answers a question asking for a value.

"How often…?", "How high…?", "When…?", "Which error code…?", "Which firmware release…?": such a
question asks for a value of a known form (a frequency, a quantity with its unit, a date, a code or
a version), and the passage states it in that form. The span is found by its form, not generated,
so ``query.answer_style: extract`` quotes "0.2 mm" rather than the sentence around it, and a small
model that mis-copies "E-214" as "241" is caught (``auto``).

Rules of form rather than a learned reader: a reading model would be one more model to load for
every answer, and a rule either finds a span the passage holds or finds nothing. Questions that ask
for prose (what is, why, how does) get no span here; their answer is a sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

ValueKind = Literal["frequency", "quantity", "date", "code"]

_SPELLED = (
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred)"
)
_NUMBER_WORDS = rf"{_SPELLED}|a few|several|a|an"
_PERIODS = r"(?:second|minute|hour|day|night|week|fortnight|month|quarter|year|season|cycle)s?"
_FREQUENCY_RE = re.compile(
    rf"\b(?:(?:once|twice|\w+ times)\s+)?(?:every|each)\s+(?:(?:\d+(?:\.\d+)?|{_NUMBER_WORDS}|other)\s+)?"
    rf"{_PERIODS}\b"
    rf"|\b(?:once|twice|\d+\s+times|(?:{_NUMBER_WORDS})\s+times)\s+(?:a|an|per|each)\s+{_PERIODS}\b"
    r"|\b(?:hourly|daily|nightly|weekly|fortnightly|monthly|quarterly|yearly|annually)\b",
    re.I,
)
_NUMERAL = r"[£$€¥]?\d+(?:[.,]\d+)*"
# A unit is the word after the number ("868 MHz", "1.5 meters", "27 days"), or a sign ("40 %").
_UNIT = r"%|°\s?[CF]\b|[A-Za-zµΩ°][A-Za-z²³/]*"
_QUANTITY_RE = re.compile(
    rf"(?<![\w.\-/])(?P<number>{_NUMERAL}(?![\w.\-/]*\d)|\b{_SPELLED}(?:-{_SPELLED})?\b)"
    rf"(?:\s?(?P<unit>{_UNIT}))?",
    re.I,
)
# A range of two quantities: "between 7.2 V and 8.4 V", "-3.0 to +3.0 °C", "10–20 mm".
_BOUND = rf"[-+±]?\d+(?:[.,]\d+)?(?:\s?(?:{_UNIT}))?"
_RANGE_RE = re.compile(rf"(?<![\w.])(?:between\s+)?{_BOUND}\s*(?:and|to|–|—|-)\s*{_BOUND}(?![\w.]*\d)")
_NOT_UNITS = {
    "a", "an", "and", "are", "as", "at", "by", "for", "from", "in", "is", "of", "on", "or", "the",
    "to", "was", "were", "with",
}  # fmt: skip
_MONTH = (
    r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_ORD = r"(?:st|nd|rd|th)?"
DATE_PATTERNS = (  # (pattern, group order): year, month, day; attribution reads them too
    (re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b"), "ymd"),
    (re.compile(rf"\b(\d{{1,2}}){_ORD}\s+(?:of\s+)?{_MONTH},?(?:\s+(\d{{4}}))?\b", re.I), "dmy"),
    (re.compile(rf"\b{_MONTH}\s+(\d{{1,2}}){_ORD}(?:,?\s+(\d{{4}}))?\b", re.I), "mdy"),
    (re.compile(rf"\b{_MONTH}\s+(\d{{4}})\b", re.I), "my"),
)
_YEAR_RE = re.compile(r"\b(?:1[89]|20)\d\d\b")
# A code mixes letters and digits or joins parts with dashes and dots: J4, E-214, AUR-7731-X,
# GPL-3.0, 2.4.0; a port or a pin is a bare number too.
_CODE_RE = re.compile(r"(?<![\w.\-])(?=[\w.\-]*\d)[A-Za-z0-9]+(?:[.\-_/][A-Za-z0-9]+)*(?![\w\-])")
_VERSION_RE = re.compile(r"^v?\d+(?:\.\d+)+(?:[-+.][\w.]+)?$", re.I)
_LICENSE_RE = re.compile(
    r"^(?:MIT|ISC|BSD|Unlicense|CC0|WTFPL|(?:[A-Z]{2,}[A-Za-z]*|Apache|Artistic|Zlib)(?:-[A-Za-z0-9.]+)*-\d[\w.+-]*)$"
)
_LICENSE_TOKEN_RE = re.compile(r"(?<![\w\-])[A-Z][\w.+\-]*[\w+](?![\w\-])")

# The noun a "which …"/"what is the …" question asks for, and the form of its value. A unit
# pattern narrows a quantity ("Which radio frequency" wants Hz, not the "AS-868" beside it).
_LENGTH = r"[cmk]?m|met(?:er|re)s?|ft|feet|foot|inch(?:es)?"
_QUANTITY_UNITS = {
    "frequency": r"[kMG]?Hz",
    "band": r"[kMG]?Hz",
    "voltage": r"m?V|volts?",
    "current": r"[mµ]?A|amps?|amperes?",
    "temperature": r"°\s?[CF]|degrees?",
    "height": _LENGTH,
    "length": _LENGTH,
    "width": _LENGTH,
    "depth": _LENGTH,
    "distance": r"[cmk]?m|met(?:er|re)s?|ft|feet|foot|miles?|kilomet(?:er|re)s?",
    "range": "",  # a range of values, else a distance: AskedValue.spans
    "weight": r"k?g|grams?|kilograms?|lbs?|pounds?|ounces?|oz",
    "price": r"[£$€¥].*|\d.*",
    "cost": r"[£$€¥].*|\d.*",
    "power": r"[mk]?W|watts?",
    "pressure": r"h?Pa|bar|psi|mbar",
    "speed": r".*/.*|mph|knots?",
    "capacity": r"[mk]?Ah|[GMT]B|l|litres?|liters?",
    "size": r".+",
    "amount": r".+",
    "rate": r".+",
    "interval": r".+",
    "duration": r".+",
    "period": r".+",
    "timeout": r".+",
    "limit": r".+",
    "percentage": r"%|percent",
    "altitude": r"[cmk]?m|met(?:er|re)s?|ft|feet",
}
# "How high…?" asks for a height.
for _adjective, _noun in (("high", "height"), ("tall", "height"), ("deep", "depth"), ("wide", "width"),
                          ("far", "distance"), ("heavy", "weight"), ("hot", "temperature"),
                          ("cold", "temperature"), ("warm", "temperature")):  # fmt: skip
    _QUANTITY_UNITS[_adjective] = _QUANTITY_UNITS[_noun]
_VERSION_NOUNS = {"release", "version", "firmware", "update"}
_CODE_NOUNS = {
    "code", "error", "sku", "id", "identifier", "serial", "model", "part", "connector", "port", "pin",
    "jumper", "socket", "terminal", "channel", "number", "address", "key", "slot", "fuse",
}  # fmt: skip
_LICENSE_NOUNS = {"license", "licence"}
_DATE_NOUNS = {"date", "day", "year", "month"}
_WHICH_RE = re.compile(
    r"\b(?:which|what)\s+(?:(?:is|are|was|were)\s+)?(?:(?:the|a|an|its|their)\s+)?((?:[\w\-]+\s+){0,2}[\w\-]+)",
    re.I,
)
_HOW_OFTEN_RE = re.compile(r"\bhow\s+(?:often|frequently)\b", re.I)
_HOW_MUCH_RE = re.compile(
    r"\bhow\s+(?:much|many|high|tall|long|far|deep|wide|big|large|heavy|old|fast|hot|cold|low|thick|"
    r"warm|loud|strong|close|soon|early|late)\b",
    re.I,
)
_WHEN_RE = re.compile(r"^\W*when\b|\bin\s+what\s+year\b|\bwhat\s+year\b", re.I)
# A Markdown heading, or a line in capitals of two words or more ("EVERY SIX MONTHS").
_HEADING_RE = re.compile(r"^\s*(?:#{1,6}\s|<h\d)|^\s*[A-Z]{2,}(?:[ \t]+[A-Z][A-Z&/'-]*)+\s*$")
_RULE_RE = re.compile(r"^\s*(?:-{3,}|={3,})\s*$")
_WORD_RE = re.compile(r"[A-Za-z][\w\-]*")
_QUESTION_STOP = {
    "the", "a", "an", "of", "in", "on", "at", "to", "for", "and", "or", "is", "are", "was", "were",
    "does", "do", "did", "which", "what", "when", "how", "should", "be", "it", "its", "that", "this",
    "use", "uses", "used", "with", "by", "from", "each", "every",
}  # fmt: skip


@dataclass(frozen=True)
class AskedValue:
    """What form of value a question asks for; ``noun`` is the word that said so."""

    kind: ValueKind
    noun: str

    def spans(self, text: str) -> list[tuple[int, str]]:
        """Each value of this form in ``text``: (offset, as written)."""
        if self.kind == "frequency":
            return [(m.start(), m.group(0)) for m in _FREQUENCY_RE.finditer(text)]
        if self.kind == "date":
            return _dates(text)
        if self.kind == "quantity" and self.noun == "range":  # of values, else a distance
            ranges = [(m.start(), m.group(0)) for m in _RANGE_RE.finditer(text)]
            return ranges or _quantities(text, _QUANTITY_UNITS["distance"])
        if self.kind == "quantity":
            return _quantities(text, _QUANTITY_UNITS.get(self.noun))
        if self.noun in _LICENSE_NOUNS:
            tokens = _LICENSE_TOKEN_RE.finditer(text)
            return [(m.start(), m.group(0)) for m in tokens if _LICENSE_RE.match(m.group(0))]
        codes = [(m.start(), m.group(0)) for m in _CODE_RE.finditer(text)]
        if self.noun in _VERSION_NOUNS:
            return [(at, code) for at, code in codes if _VERSION_RE.match(code)]
        # A code is not a date, nor a plain decimal ("1.5" is a quantity).
        return [(at, code) for at, code in codes if not _dates(code) and not re.fullmatch(r"\d+\.\d+", code)]


def asked_value(question: str) -> AskedValue | None:
    """The form of value ``question`` asks for, or None where it asks for prose."""
    if _HOW_OFTEN_RE.search(question):
        return AskedValue("frequency", "often")
    if m := _HOW_MUCH_RE.search(question):
        return AskedValue("quantity", m.group(0).split()[-1].lower())
    if _WHEN_RE.search(question):
        return AskedValue("date", "when")
    for m in _WHICH_RE.finditer(question):
        # The head of the noun phrase is its last noun: "battery voltage range" asks for a range.
        words = list(re.finditer(r"[^\s\-]+", m.group(1)))
        ends = [i for i, w in enumerate(words) if w.group(0).lower() in _QUESTION_STOP]
        words = words[: ends[0]] if ends else words  # "range of temperature offsets": the range
        found = [(w, a) for w in words if (a := _asked_by_noun(w.group(0).lower()))]
        if found:
            word, asked = found[-1]
            # "What is connector J4 for?" names its value: it asks about it, not for it.
            after = question[m.start(1) + word.end() :].lstrip()
            return None if any(at == 0 for at, _ in asked.spans(after)) else asked
    return None


def _asked_by_noun(word: str) -> AskedValue | None:
    noun = word.rstrip("s") if word.rstrip("s") in _CODE_NOUNS | _VERSION_NOUNS else word
    if noun in _DATE_NOUNS:
        return AskedValue("date", noun)
    if noun in _QUANTITY_UNITS:
        return AskedValue("quantity", noun)
    if noun in _CODE_NOUNS | _VERSION_NOUNS | _LICENSE_NOUNS:
        return AskedValue("code", noun)
    return None


def answer_span(asked: AskedValue, question: str, passage: str, sentence: str) -> str | None:
    """The value ``asked`` for, as ``passage`` writes it: in ``sentence`` (one of the passage's
    sentences, whitespace folded), else in the lines beside it within its paragraph (a JSON
    object's other fields), else in the headings above it (a changelog's release, a schedule's
    "EVERY SIX MONTHS"). Of several in one place, the one nearest the question's words. Values
    the question itself states are not answers."""
    said = question.lower()
    for place in _places(passage, sentence):
        found = [(at, span.strip()) for at, span in asked.spans(place) if span.strip().lower() not in said]
        if found:
            return min(found, key=lambda f: (_distance(place, f[0], len(f[1]), question), f[0]))[1]
    return None


def _places(passage: str, sentence: str) -> Iterator[str]:
    yield sentence
    lines = passage.splitlines()
    at = _line_of(lines, sentence)
    if at is None:
        return
    last = at + _line_count(lines, at, sentence)
    for step in (1, 2):  # the paragraph's other lines, nearest first, the line above before below
        for i in (at - step, last - 1 + step):
            if 0 <= i < len(lines) and lines[i].strip() and _same_paragraph(lines, at, last, i):
                yield lines[i]
    for i in range(at - 1, -1, -1):
        if _is_heading(lines, i):
            yield lines[i]


def is_heading(passage: str, sentence: str) -> bool:
    """Whether ``sentence`` is a whole heading line of ``passage`` ("EVERY SIX MONTHS" over its
    rule, "## Radio link"): a label for the lines below it, which states nothing by itself."""
    lines = passage.splitlines()
    at = _line_of(lines, sentence)
    return (
        at is not None
        and " ".join(lines[at].split()) == " ".join(sentence.split())
        and _is_heading(lines, at)
    )


def _line_of(lines: list[str], sentence: str) -> int | None:
    """The line where ``sentence`` (whitespace folded) begins."""
    head = " ".join(sentence.split()[:4])
    for i, line in enumerate(lines):
        folded = " ".join(" ".join(lines[i : i + 4]).split())
        if head and head in folded and head[:12] in " ".join(line.split()) + " ":
            return i
    return None


def _line_count(lines: list[str], at: int, sentence: str) -> int:
    words, count = len(sentence.split()), 0
    while at + count < len(lines) and words > 0:
        words -= len(lines[at + count].split())
        count += 1
    return max(count, 1)


def _same_paragraph(lines: list[str], first: int, last: int, i: int) -> bool:
    span = range(i, first) if i < first else range(last, i + 1)
    return all(lines[j].strip() for j in span)


def _is_heading(lines: list[str], i: int) -> bool:
    line = lines[i]
    if not line.strip() or _RULE_RE.match(line):
        return False
    underlined = i + 1 < len(lines) and _RULE_RE.match(lines[i + 1]) is not None
    return underlined or _HEADING_RE.match(line) is not None


def _distance(place: str, at: int, length: int, question: str) -> int:
    """Characters between a span and the nearest of the question's own words in ``place``."""
    words = {w.lower() for w in _WORD_RE.findall(question)} - _QUESTION_STOP
    hits = [m.start() for m in _WORD_RE.finditer(place) if m.group(0).lower() in words]
    if not hits:
        return 0
    return min(abs(h - at) if h < at else max(0, h - (at + length)) for h in hits)


def _quantities(text: str, unit: str | None) -> list[tuple[int, str]]:
    found = []
    for m in _QUANTITY_RE.finditer(text):
        number, shown_unit = m.group("number"), m.group("unit") or ""
        if shown_unit.lower() in _NOT_UNITS:
            shown_unit = ""
        if not shown_unit and not any(ch.isdigit() for ch in number):
            continue  # a spelled number without a unit is a word, not a value
        if unit and not re.fullmatch(unit, shown_unit or number, re.I):
            continue
        found.append((m.start(), text[m.start() : m.start("unit")] + shown_unit if shown_unit else number))
    return found


def _dates(text: str) -> list[tuple[int, str]]:
    # The dates attribution checks, and a bare year for "what year" and "when".
    found: list[tuple[int, str]] = []
    taken: list[range] = []
    for pattern, _ in DATE_PATTERNS:
        for m in pattern.finditer(text):
            if not any(m.start() in r for r in taken):
                found.append((m.start(), m.group(0)))
                taken.append(range(m.start(), m.end()))
    for m in _YEAR_RE.finditer(text):
        if not any(m.start() in r for r in taken):
            found.append((m.start(), m.group(0)))
    return found
