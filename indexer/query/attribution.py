"""Each sentence of an answer tied to the passage that best supports it, and flagged where none does.

A small local model often answers without ``[n]`` citations, or states a number, a date, a code
or a name that no passage contains. After generation, each sentence is compared with every
retrieved passage: by embedding similarity (the question encoder's vectors), and by the share of
its facts (numbers, dates, codes, names) that the passage contains. The best passage becomes the
sentence's citation where the model gave none (``cited_by: "system"``). A sentence is unsupported
when no passage is similar enough, or when one of its facts appears in no retrieved passage at all
("every 12 months" against "six months", "£1.1 million" or "1234567890" out of nowhere).

``query.unsupported`` then says what happens: ``flag`` (marked, the text unchanged), ``drop``
(unsupported sentences removed from the answer) or ``refuse`` (the whole answer withheld).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

from indexer.query.answer_span import DATE_PATTERNS, answer_span, asked_value, is_heading

if TYPE_CHECKING:
    from indexer.components import Components
    from indexer.query.engine import Source

Embed = Callable[[Sequence[str]], list[list[float]]]
UnsupportedPolicy = Literal["flag", "drop", "refuse"]
AnswerStyle = Literal["generate", "extract", "auto"]

# Below this a sentence has no supporting passage. Support mixes cosine similarity (MiniLM: a
# passage that states the sentence scores about 0.45 to 0.8, an unrelated one under 0.2) with the
# share of the sentence's facts that the passage holds; measured on the sample corpus (see tests).
SUPPORT_THRESHOLD = 0.3
# How much of the support the facts make up, when a sentence has any.
_FACT_WEIGHT = 0.4
# Passage pieces embedded per passage at most (a chunk is at most a few hundred tokens).
_MAX_PIECES = 32
# extract: passage sentences this close to the best one's similarity count as equally good.
_EXTRACT_MARGIN = 0.05
# What stating a new number, date or code adds to a quote's closeness to the question. Measured
# with `indexer eval` (docs/answer-quality.md): on the sample questions, answered correctly 3 of
# 10 before it and the filter below, 7 after (F1 0.10 to 0.18); on the first 6 of Paul Graham's,
# F1 0.13 to 0.22. Any bonus from 0.08 to 0.12 quoted the same sentences of the sample.
_FACT_BONUS = 0.1
# A Markdown heading, or a sentence that ends in a question mark.
_NOT_AN_ANSWER_RE = re.compile(r"^\s*#|\?[\"')\]]*\s*$")
# A value must be in one of this many passage sentences closest to its claim, or it contradicts.
_NEAR_PIECES = 3

REFUSAL = "The retrieved passages do not support an answer to this question."

_CITATION_RE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_BLOCK_RE = re.compile(r"\n\s*\n|\n\s*(?:[-*•]|\d{1,2}[.)])\s+")
_WRAPPED_RE = re.compile(r"(?<=[^\s.!?:;])\n(?=[ \t]*[a-z])")
_LIST_MARKER_RE = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=\S)")
_ONLY_CITATIONS_RE = re.compile(r"^(?:\s*\[\d+(?:\s*,\s*\d+)*\]\s*[.,;:]?)+\s*$")
_LEADING_CITATIONS_RE = re.compile(r"^(?:\s*\[\d+(?:\s*,\s*\d+)*\])+[.,;:]?\s*")

_MONTHS = {
    name: n
    for n, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_WEEKDAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
# A code mixes letters and digits (PG16, INC-4521, v2.3.1), or joins digits with separators
# (127.0.0.1, 2024/25), or is a long run of digits (1234567890): matched as written, not as a value.
_CODE_RE = re.compile(
    r"(?<![\w.])(?:(?=[\w\-/:#.]*\d)[A-Za-z0-9]+(?:[-_/:#.][A-Za-z0-9]+)+|[A-Za-z]+\d[A-Za-z0-9]*|\d+[A-Za-z][A-Za-z0-9]*"
    r"|\d{6,})(?![\w])"
)
_DECIMAL_RE = re.compile(r"^\d+\.\d+$")
_UNIT_RE = re.compile(r"^(\d+)(st|nd|rd|th|[a-z]{1,3})$", re.I)
_SCALE_WORDS = {
    "thousand": 10**3,
    "million": 10**6,
    "mn": 10**6,
    "billion": 10**9,
    "bn": 10**9,
    "trillion": 10**12,
}
# One letter scales only after a currency sign: "£1.1m" is money, "1.5 m" is a length.
_MONEY_SCALES = {"k": 10**3, "m": 10**6, "b": 10**9}
_NUMBER_RE = re.compile(
    r"(?<![\w.,])([£$€¥]\s?)?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?"
    r"(?:\s*(thousand|million|billion|trillion|bn|mn)\b|(k|m|b)\b)?",
    re.I,
)
_UNITS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_VALUES = {w: i for i, w in enumerate(_UNITS)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_WORD_VALUES |= {"dozen": 12}
_WORD_SCALES = {"hundred": 100, "thousand": 10**3, "million": 10**6, "billion": 10**9}
_WORD_RE = re.compile(r"[A-Za-z]+")
# "one" is mostly a pronoun ("the one that..."): a sentence's "one" is no claim to check.
_WEAK_WORDS = {"one"}
_NAME_RE = re.compile(r"\b[A-Z][\w'’]*(?:[ \t]+[A-Z][\w'’]*)*")
_NOT_NAMES = {"i", "i'm", "i've", "i'd", "i'll", "ok", "yes", "no"}


@dataclass
class Sentence:
    """One sentence of an answer: where it is in the answer text (``start``, ``end``), the passages
    it cites (``cited_by``: the model's own ``[n]``, or the system's choice where it wrote none),
    how well the best passage supports it (0 to 1), and why it is ``supported`` or not."""

    text: str
    citations: list[int]
    support: float
    supported: bool
    cited_by: Literal["model", "system"] | None
    reason: str | None = None
    start: int = 0
    end: int = 0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "text": self.text,
            "citations": self.citations,
            "support": round(self.support, 3),
            "supported": self.supported,
            "cited_by": self.cited_by,
            "start": self.start,
            "end": self.end,
        }
        if self.reason is not None:
            data["reason"] = self.reason
        return data


@dataclass
class Checked:
    """An answer after attribution: its text (less what ``query.unsupported`` removed), its
    sentences, and a notice when something was removed or withheld."""

    answer: str | None
    sentences: list[Sentence] = field(default_factory=list)
    notice: str | None = None


def question_embedder(components: Components) -> Embed:
    """The one place attribution reaches an embedding model: the model that embeds questions,
    since answer sentences are short texts like questions. Loaded on first use, not here."""

    def embed(texts: Sequence[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in components.query_embedder.embed(list(texts))]

    return embed


@dataclass(frozen=True)
class _Fact:
    kind: Literal["number", "date", "code", "name"]
    shown: str  # as the sentence wrote it
    key: Any


@dataclass
class _Facts:
    numbers: set[Decimal] = field(default_factory=set)
    dates: list[tuple[int | None, int, int | None]] = field(default_factory=list)
    text: str = ""  # lowercased, for codes
    codes: list[str] = field(default_factory=list)
    words: set[str] = field(default_factory=set)  # lowercased, for names


def split_sentences(answer: str) -> list[tuple[int, int]]:
    """Sentence spans of ``answer``: one per line item, lines split after ``.``, ``!`` or ``?``; a
    citation standing after the full stop ("... 9102. [1]") stays with its sentence."""
    spans: list[tuple[int, int]] = []
    offset = 0
    # A line the model wrapped mid-sentence goes on: read as one line (same length, same offsets).
    answer = _WRAPPED_RE.sub(" ", answer)
    for line in answer.splitlines(keepends=True):
        start = offset
        offset += len(line)
        marker = _LIST_MARKER_RE.match(line)
        body_start = start + (marker.end() if marker else 0)
        cut = body_start
        pieces: list[tuple[int, int]] = []
        for end in _SENTENCE_END_RE.finditer(answer, body_start, start + len(line.rstrip())):
            pieces.append((cut, end.start()))
            cut = end.end()
        pieces.append((cut, start + len(line.rstrip())))
        for a, b in pieces:
            text = answer[a:b]
            if not text.strip():
                continue
            lead = _LEADING_CITATIONS_RE.match(text)
            if spans and (_ONLY_CITATIONS_RE.match(text) or lead):
                moved = b if _ONLY_CITATIONS_RE.match(text) else a + lead.end()  # type: ignore[union-attr]
                spans[-1] = (spans[-1][0], a + len(answer[a:moved].rstrip()))
                a = moved
                text = answer[a:b]
                if not text.strip():
                    continue
            if any(c.isalnum() for c in _CITATION_RE.sub("", text)):
                spans.append((a + len(text) - len(text.lstrip()), a + len(text.rstrip())))
            elif spans:
                spans[-1] = (spans[-1][0], b)
    return spans


def attribute(
    answer: str | None,
    sources: Sequence[Source],
    embed: Embed,
    question: str | None = None,
) -> list[Sentence]:
    """Each sentence of ``answer`` with its citations and support among ``sources``."""
    if not answer or not answer.strip():
        return []
    spans = split_sentences(answer)
    if not spans:
        return []
    texts = [answer[a:b] for a, b in spans]
    claims = [_CITATION_RE.sub("", t).strip() for t in texts]
    valid = {s.rank for s in sources}
    if not sources:
        return [
            Sentence(t, [], 0.0, False, None, "no passage was retrieved", a, b)
            for t, (a, b) in zip(texts, spans, strict=True)
        ]
    # A sentence is compared with each passage whole and with each of its sentences: a long
    # passage's one vector dilutes the one sentence that states the claim.
    pieces = [_passage_sentences(s.text) for s in sources]
    vectors = embed([*claims, *(p for piece in pieces for p in piece)])
    sentence_vectors = vectors[: len(claims)]
    passage_vectors, at = [], len(claims)
    for piece in pieces:
        passage_vectors.append(vectors[at : at + len(piece)])
        at += len(piece)
    passage_facts = [_passage_facts(s.text) for s in sources]
    piece_facts = [[_passage_facts(p) for p in piece] for piece in pieces]
    asked = _asked_words(question or "")
    sentences = []
    for text, claim, (a, b), vector in zip(texts, claims, spans, sentence_vectors, strict=True):
        facts = _claim_facts(claim, asked)
        found = [{f for f in facts if _holds(f, p)} for p in passage_facts]
        scores = []
        closest: list[tuple[float, int, int]] = []  # (similarity, passage, piece)
        for n, (held, piece_vectors) in enumerate(zip(found, passage_vectors, strict=True)):
            similarities = [_cosine(vector, v) for v in piece_vectors]
            closest += [(sim, n, k) for k, sim in enumerate(similarities)]
            similarity = max(0.0, *similarities)
            if facts:
                scores.append((1 - _FACT_WEIGHT) * similarity + _FACT_WEIGHT * len(held) / len(facts))
            else:
                scores.append(similarity)
        best = max(range(len(sources)), key=lambda i: scores[i])
        model_cited = _cited(text, valid)
        citations, cited_by = (model_cited, "model") if model_cited else ([sources[best].rank], "system")
        missing = [f for f in facts if not any(f in held for held in found)]
        reason = None
        if missing:
            shown = ", ".join(f"“{f.shown}”" for f in missing)
            kinds = sorted({f.kind for f in missing})
            verb = "appears" if len(missing) == 1 else "appear"
            reason = f"{' and '.join(kinds)} {shown} {verb} in no retrieved passage"
        elif contradicted := _contradicted(facts, sorted(closest, reverse=True), piece_facts):
            fact, n, k = contradicted
            reason = (
                f"{fact.kind} “{fact.shown}” is not what the closest passage sentence says "
                f"([{sources[n].rank}]: “{_short(pieces[n][k])}”)"
            )
        elif scores[best] < SUPPORT_THRESHOLD:
            reason = (
                f"no retrieved passage supports it (best: [{sources[best].rank}], support "
                f"{scores[best]:.2f} < {SUPPORT_THRESHOLD})"
            )
        sentences.append(
            Sentence(text, citations, scores[best], reason is None, cited_by, reason, a, b)  # type: ignore[arg-type]
        )
    return sentences


def apply_policy(answer: str | None, sentences: list[Sentence], policy: UnsupportedPolicy) -> Checked:
    """``query.unsupported`` applied: ``flag`` keeps everything, ``drop`` cuts the unsupported
    sentences out of the answer, ``refuse`` withholds the answer if any sentence is unsupported."""
    bad = [s for s in sentences if not s.supported]
    if answer is None or policy == "flag" or not bad:
        return Checked(answer, sentences)
    if policy == "refuse":
        return Checked(
            REFUSAL,
            [],
            f"answer withheld (query.unsupported: refuse): {len(bad)} of {len(sentences)} sentence(s) "
            "not supported by the retrieved passages",
        )
    kept: list[Sentence] = []
    text = ""
    previous_end = 0  # of the last kept sentence
    for s in (s for s in sentences if s.supported):
        if kept:
            text += "\n" if "\n" in answer[previous_end : s.start] else " "
        kept.append(Sentence(**{**s.__dict__, "start": len(text), "end": len(text) + s.end - s.start}))
        text += answer[s.start : s.end]
        previous_end = s.end
    text = text or REFUSAL
    notice = f"{len(bad)} unsupported sentence(s) dropped (query.unsupported: drop): " + "; ".join(
        s.reason or "" for s in bad
    )
    return Checked(text, kept, notice)


def _contradicted(
    facts: list[_Fact], closest: list[tuple[float, int, int]], piece_facts: list[list[_Facts]]
) -> tuple[_Fact, int, int] | None:
    """A number, date or code found somewhere in the passages, but in none of the passage
    sentences closest to the claim, while the closest one states another value of its kind: the
    right row, the wrong value ("E-503" where the sentence about that sensor says "E-214")."""
    if not closest:
        return None
    near = [piece_facts[n][k] for _, n, k in closest[:_NEAR_PIECES]]
    _, top_n, top_k = closest[0]
    top = piece_facts[top_n][top_k]
    for fact in facts:
        if fact.kind == "name" or any(_holds(fact, piece) for piece in near):
            continue
        rival = {"number": top.numbers, "date": top.dates, "code": top.codes}[fact.kind]
        if rival:
            return fact, top_n, top_k
    return None


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _asked_words(question: str) -> set[str]:
    return {w.lower() for w in _WORD_RE.findall(question)}


def _states_a_new_fact(sentence: str, question: str, asked: set[str]) -> bool:
    """Whether ``sentence`` states a number, date or code that ``question`` (its words ``asked``)
    does not: what a factual question asks for, and what a sentence only restating it lacks."""
    question = question.lower()
    return any(f.kind != "name" and f.shown.lower() not in question for f in _claim_facts(sentence, asked))


def _passage_sentences(text: str) -> list[str]:
    """A passage's sentences (lines joined within a paragraph or list item), very short ones
    left out; the whole passage where it has none. Sentences, not the passage, are embedded:
    one vector of a long passage dilutes the sentence that states the claim, and costs more."""
    pieces = []
    for block in _BLOCK_RE.split(text):
        for line in _WRAPPED_RE.sub(" ", block).splitlines():  # a table's or a list's rows apart
            flat = " ".join(line.split())
            pieces += [p for p in _SENTENCE_END_RE.split(flat) if len(p.split()) >= 3]
    return pieces[:_MAX_PIECES] or [text]


def extract(question: str, sources: Sequence[Source], embed: Embed) -> Checked:
    return _extract(question, sources, embed)[0]


def _extract(question: str, sources: Sequence[Source], embed: Embed) -> tuple[Checked, str | None]:
    """``query.answer_style: extract``: the passage sentence closest to the question, quoted with
    its citation; of near-equal ones (within ``_EXTRACT_MARGIN``), the shortest. Headings and
    questions are passed over, and a sentence stating a number, date or code the question does
    not is closer by ``_FACT_BONUS``. Where the question asks for a value of a known form (a
    frequency, a quantity, a date, a code: ``answer_span``), the bonus goes to the sentences
    whose place in the passage holds one, and the quote is that value alone. Nothing is
    generated, so nothing can be invented. Also returns that value, where one was quoted."""
    candidates = [(s, piece) for s in sources for piece in _passage_sentences(s.text)]
    candidates = [(s, p) for s, p in candidates if len(_WORD_RE.findall(p)) >= 3]
    # A heading names a topic and a question asks one: neither answers, though both read closest
    # to the question (an FAQ's "Is it open source?" before the sentence naming the licence).
    # An underlined heading ("EVERY THREE MONTHS") is found by the passage's layout, not its text.
    statements = [
        (s, p) for s, p in candidates if not _NOT_AN_ANSWER_RE.search(p) and not is_heading(s.text, p)
    ]
    candidates = statements or candidates
    if not candidates:
        return Checked(None, [], "no passage sentence to quote (query.answer_style: extract)"), None
    vectors = embed([question, *(p for _, p in candidates)])
    asked = _asked_words(question)
    value = asked_value(question)
    spans = [answer_span(value, question, s.text, piece) if value else None for s, piece in candidates]
    scores = [
        _cosine(vectors[0], v)
        + (_FACT_BONUS if (span if value else _states_a_new_fact(piece, question, asked)) else 0.0)
        for v, (_, piece), span in zip(vectors[1:], candidates, spans, strict=True)
    ]
    best = max(scores)
    near = [i for i, score in enumerate(scores) if score >= best - _EXTRACT_MARGIN]
    pick = min(near, key=lambda i: (len(spans[i] or candidates[i][1]), -scores[i]))
    source, quote = candidates[pick]
    text = f"“{(spans[pick] or quote).strip()}” [{source.rank}]"
    sentence = Sentence(text, [source.rank], max(0.0, scores[pick]), True, "system", None, 0, len(text))
    return Checked(text, [sentence]), spans[pick]


def answer_checker(
    embed: Embed, question: str, policy: UnsupportedPolicy = "flag", style: AnswerStyle = "generate"
) -> Callable[[str | None, Sequence[Source]], Checked]:
    """What an answer stream applies once the model has finished (``answer`` is None where no
    model ran): attribution and ``query.unsupported`` for a generated answer, the quote for
    ``extract``, and for ``auto`` the model's answer when every sentence is supported and, where
    the question asks for a value, it states the value the extract quotes; else the quote."""

    asks_value = asked_value(question) is not None

    def checked(answer: str | None, sources: Sequence[Source]) -> Checked:
        if style == "extract" or (style == "auto" and answer is None):
            return extract(question, sources, embed)
        sentences = attribute(answer, sources, embed, question)
        if style == "auto":
            bad = sum(not s.supported for s in sentences)
            quoted, value = _extract(question, sources, embed) if bad or asks_value else (None, None)
            why = f"had {bad} unsupported sentence(s)" if bad else None
            if value and not bad and not _states_value(answer or "", value):
                # A small model restates the question and mis-copies the value ("241" for E-214).
                why = f"did not state the value the passages give (“{value}”)"
            if quoted is not None and why:
                notice = (
                    f"the model's answer {why}: answered with a quote from the passages instead "
                    "(query.answer_style: auto)"
                )
                return Checked(
                    quoted.answer, quoted.sentences, "; ".join(n for n in (notice, quoted.notice) if n)
                )
        return apply_policy(answer, sentences, policy)

    return checked


def _states_value(answer: str, value: str) -> bool:
    """Whether ``answer`` states ``value`` as a whole phrase, in any case ("every six months" for
    "EVERY SIX MONTHS"; "every 15 minutes" for "once every 15 minutes")."""
    core = re.sub(r"^(?:once|twice)\s+", "", " ".join(value.lower().split()))
    return re.search(rf"(?<![\w.-]){re.escape(core)}(?![\w-])", " ".join(answer.lower().split())) is not None


# -- facts ------------------------------------------------------------------------------------------


def _cited(text: str, valid: set[int]) -> list[int]:
    seen: list[int] = []
    for match in _CITATION_RE.finditer(text):
        for n in (int(x) for x in match.group(1).split(",")):
            if n in valid and n not in seen:
                seen.append(n)
    return seen


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _dates(text: str) -> tuple[list[tuple[tuple[int | None, int, int | None], str]], str]:
    """The dates in ``text`` as (year, month, day), and the text with them blanked out."""
    found = []
    for pattern, order in DATE_PATTERNS:
        for m in pattern.finditer(text):
            groups = dict(zip(order, m.groups(), strict=True))
            try:
                month = (
                    int(groups["m"]) if groups["m"].isdigit() else _MONTHS[groups["m"].lower().rstrip(".")]
                )
            except KeyError:
                continue
            day = int(groups["d"]) if groups.get("d") else None
            year = int(groups["y"]) if groups.get("y") else None
            if not 1 <= month <= 12 or (day is not None and not 1 <= day <= 31):
                continue
            found.append(((year, month, day), m.group(0)))
        text = pattern.sub(lambda m: " " * len(m.group(0)), text)
    return found, text


def _codes(text: str) -> tuple[list[str], str]:
    codes = []

    def blank(m: re.Match[str]) -> str:
        token = m.group(0).rstrip(".")
        if _DECIMAL_RE.match(token) or _UNIT_RE.match(token):
            return m.group(0)
        codes.append(token)
        return " " * len(m.group(0))

    return codes, _CODE_RE.sub(blank, text)


def _numbers(text: str, weak: bool = True) -> list[tuple[Decimal, str]]:
    """Numerals (1,200; 1.1 million; 20th; 5km) and number words (six, twenty-seven, two hundred)."""
    found = []
    for m in _NUMBER_RE.finditer(text):
        try:
            value = Decimal(m.group(2).replace(",", "") + (m.group(3) or ""))
        except InvalidOperation:
            continue
        shown = m.group(0)
        if m.group(4):
            value *= _SCALE_WORDS[m.group(4).lower()]
        elif m.group(5) and m.group(1):
            value *= _MONEY_SCALES[m.group(5).lower()]
        elif m.group(5):
            shown = shown[:-1]
        found.append((value.normalize(), shown.strip()))
    words = list(_WORD_RE.finditer(text))
    i = 0
    while i < len(words):
        total, current = 0, 0
        used: list[re.Match[str]] = []
        while i < len(words):
            word = words[i].group(0).lower()
            if word in _WORD_VALUES:
                current += _WORD_VALUES[word]
            elif word in _WORD_SCALES and used:
                current = max(current, 1) * _WORD_SCALES[word]
                if _WORD_SCALES[word] > 100:
                    total, current = total + current, 0
            elif (
                word == "and"
                and used
                and i + 1 < len(words)
                and words[i + 1].group(0).lower() in _WORD_VALUES
            ):
                i += 1
                continue
            else:
                break
            used.append(words[i])
            i += 1
        if used:
            shown = text[used[0].start() : used[-1].end()]
            if weak or shown.lower() not in _WEAK_WORDS:
                found.append((Decimal(total + current), shown))
        else:
            i += 1
    return found


def _passage_facts(text: str) -> _Facts:
    dates, rest = _dates(text)
    facts = _Facts(text=text.lower(), words={w.lower() for w in _WORD_RE.findall(text)})
    facts.dates = [d for d, _ in dates]
    for year, _, day in facts.dates:  # "in 2024" is supported by "20 April 2024"
        facts.numbers.update(Decimal(n) for n in (year, day) if n is not None)
    codes, rest = _codes(rest)
    facts.codes = codes
    facts.numbers.update(v for v, _ in _numbers(rest))
    for code in codes:  # a code's numbers count as numbers too: "port 9102" against "localhost:9102"
        facts.numbers.update(Decimal(n) for n in re.findall(r"\d+", code))
    return facts


def _claim_facts(claim: str, asked: set[str]) -> list[_Fact]:
    dates, rest = _dates(claim)
    facts = [_Fact("date", shown, date) for date, shown in dates]
    codes, rest = _codes(rest)
    facts += [_Fact("code", code, code.lower()) for code in codes]
    facts += [_Fact("number", shown, value) for value, shown in _numbers(rest, weak=False)]
    first = True
    for m in _NAME_RE.finditer(rest):
        words = [w for w in _WORD_RE.findall(m.group(0))]
        if first and m.start() == len(rest) - len(rest.lstrip()):
            words = words[1:]  # the sentence's first word is capitalised anyway
        first = False
        words = [
            w
            for w in words
            if w.lower() not in _NOT_NAMES
            and w.lower() not in asked
            and w.lower() not in _MONTHS
            and w.lower() not in _WEEKDAYS
            and w.lower() not in _WORD_VALUES
            and len(w) > 1
        ]
        if words:
            facts.append(_Fact("name", " ".join(words), tuple(w.lower() for w in words)))
    unique: list[_Fact] = []
    for fact in facts:
        if all(fact.key != f.key or fact.kind != f.kind for f in unique):
            unique.append(fact)
    return unique


def _holds(fact: _Fact, passage: _Facts) -> bool:
    if fact.kind == "number":
        return fact.key in passage.numbers
    if fact.kind == "code":
        return fact.key in passage.text
    if fact.kind == "name":
        return all(w in passage.words for w in fact.key)
    year, month, day = fact.key
    for p_year, p_month, p_day in passage.dates:
        if month == p_month and (day is None or day == p_day) and (year is None or p_year in (None, year)):
            return True
    return False
