"""Document extraction against known truth: text PDFs, scans, tables, and retrieval on scanned copies.

    python -m benchmarks.extraction                 # default sizes (a few minutes on 2 cores)
    python -m benchmarks.extraction --quick         # fewer documents (the smoke test)
    python -m benchmarks.extraction --dpi 300       # scans at one resolution only
    python -m benchmarks.extraction --out DIR       # keep the generated documents in DIR
    python -m benchmarks.extraction --markdown      # the README's table

The documents are made here from public text in ``../shared/data``, so the truth is known: Paul
Graham's essay (``paul_graham_essay``) and MS MARCO passages (``msmarco_subset``). Every document is
read by the project's one public entry point, ``indexer.ingestion.readers.read_file``, with
``ReadLimits(ocr=...)`` where that field exists, so the figures are those of whatever readers the
checkout has: a reader that skips a file counts as extracting nothing, and the reason is printed.

- Text: the essay's paragraphs rendered into text PDFs (fpdf2, DejaVu Sans), and into A4 page
  images (PIL, the same font at 11 pt) at each ``--dpi``, saved as PNGs and as image-only PDFs
  (one image per page, no text layer). Clean renders, no noise or skew: the lower bound of what a
  real scan costs. Reported: the character error rate (Levenshtein distance of the extracted text to
  the truth over the truth's length, whitespace runs made one space), goals <= 1% for text PDFs
  and <= 3% for 300-dpi scans.
- Tables: the same rows (a header, text and numeric cells) written into HTML (inside a page with
  navigation and a footer), DOCX (python-docx), PDF (fpdf2's table), XLSX (openpyxl) and CSV.
  Reported: table fidelity, the share of rows whose cells all come back, in order, as one row of a
  Markdown table whose header row is the truth's header; goal >= 0.98.
- Speed: pages per second of each route and its CPU seconds per page (this process and its
  children, so an OCR engine run as a subprocess counts), after one untimed warm-up read per
  route. On a shared machine the wall time moves with the load; the CPU seconds much less. The
  retrieval row's pages/s is the scanned copy's whole build (read, OCR, split, embed, write), by
  wall time only: the build's workers are not children of this process, so their CPU time is not
  seen here.
- Retrieval: MS MARCO passages judged highly relevant (grade >= 2) to the judged TREC DL queries,
  one per query, indexed twice with the bundled MiniLM embedder (no LLM): as text files and as
  PNG scans at the highest ``--dpi``. Reported: hit@5 of each on those queries, and the ratio
  scanned / text, goal >= 0.95.

Edit distance: Hyyrö's bit-parallel Levenshtein on Python integers (exact, O(n * m / 64)), as no
edit-distance library is a dependency of the project.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import os
import random
import re
import resource
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.machine import add_markdown_flag, markdown_table

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
ESSAY = SHARED_DATA / "paul_graham_essay" / "paul_graham_essay.txt"
MSMARCO = SHARED_DATA / "msmarco_subset"

TEXT_PDF_CER_GOAL = 0.01
SCAN_CER_GOAL = 0.03  # at 300 dpi
SCAN_GOAL_DPI = 300
TABLE_FIDELITY_GOAL = 0.98
RETRIEVAL_RATIO_GOAL = 0.95
TOP_K = 5
RELEVANT_GRADE = 2  # TREC DL: 2 highly relevant, 3 perfectly relevant

# Where Debian (fonts-dejavu-core) and matplotlib keep DejaVu Sans; without it the text PDFs use a
# core PDF font and every text is cut down to latin-1.
_FONT_CANDIDATES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",)

A4_MM = (210.0, 297.0)
MARGIN_MM = 20.0
FONT_PT = 11.0
LINE_SPACING = 1.4
MM_PER_INCH = 25.4

TABLE_HEADER = ["Code", "City", "Region", "Population", "Area (km2)", "Per diem (EUR)", "Note"]


# -- edit distance and the character error rate ---------------------------------------------------


def levenshtein(a: str, b: str) -> int:
    """Exact Levenshtein distance by Hyyrö's bit-parallel algorithm (Myers' bit vectors, global
    distance): one pass over the longer string, with the shorter one's column as Python integers."""
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    peq: dict[str, int] = {}
    for i, char in enumerate(b):
        peq[char] = peq.get(char, 0) | (1 << i)
    mask = (1 << m) - 1
    high = 1 << (m - 1)
    pv, mv, score = mask, 0, m
    for char in a:
        eq = peq.get(char, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & mask)
        mh = pv & xh
        if ph & high:
            score += 1
        elif mh & high:
            score -= 1
        # Row 0 of the distance matrix grows by one per column: a 1 shifts into the horizontal deltas.
        ph = ((ph << 1) | 1) & mask
        mh = (mh << 1) & mask
        pv = mh | (~(xv | ph) & mask)
        mv = ph & xv
    return score


def normalise(text: str) -> str:
    """Compatibility forms folded (a reader's ligature "fi" is two letters), whitespace runs one space."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def char_errors(extracted: str, truth: str) -> tuple[int, int]:
    """The edit distance of the extracted text to the truth, and the truth's length (normalised)."""
    got, want = normalise(extracted), normalise(truth)
    return levenshtein(got, want), len(want)


# -- table fidelity -------------------------------------------------------------------------------

_PIPE_SPLIT = re.compile(r"(?<!\\)\|")
_SEPARATOR_CELL = re.compile(r"^:?-{1,}:?$")


def _row_cells(line: str) -> list[str]:
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [cell.strip().replace("\\|", "|") for cell in _PIPE_SPLIT.split(line)]


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Each Markdown pipe table in ``text``: its header row's cells and its body rows' cells."""
    tables: list[tuple[list[str], list[list[str]]]] = []
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.strip().startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2:
            separator = _row_cells(block[1])
            if separator and all(_SEPARATOR_CELL.match(c) for c in separator):
                body = [_row_cells(r) for r in block[2:]]
                body = [r for r in body if not all(_SEPARATOR_CELL.match(c) for c in r)]
                tables.append((_row_cells(block[0]), body))
        block = []
    return tables


def _cell_key(value: object) -> str:
    """A cell as compared: whitespace runs one space, and numbers by value (``38.50`` is ``38.5``)."""
    text = normalise(str(value))
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(number)


def _row_key(cells: Sequence[object]) -> tuple[str, ...]:
    keys = [_cell_key(c) for c in cells]
    while keys and not keys[-1]:
        keys.pop()
    return tuple(keys)


def table_fidelity(text: str, header: Sequence[object], rows: Sequence[Sequence[object]]) -> float:
    """The share of ``rows`` that come back whole, in order, as a row of a Markdown table in
    ``text`` whose header row is ``header`` (a table split into pieces repeats its header in each)."""
    want_header = _row_key(header)
    found: set[tuple[str, ...]] = set()
    for table_header, body in markdown_tables(text):
        if _row_key(table_header) == want_header:
            found.update(_row_key(r) for r in body)
    return sum(_row_key(r) in found for r in rows) / max(1, len(rows))


# -- the source text ------------------------------------------------------------------------------


def essay_paragraphs() -> list[str]:
    text = ESSAY.read_text(encoding="utf-8")
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


@dataclass
class Fonts:
    """DejaVu Sans for both renderers, or None: core PDF fonts and PIL's default, latin-1 text."""

    path: Path | None

    @classmethod
    def find(cls) -> Fonts:
        candidates = [Path(c) for c in _FONT_CANDIDATES]
        try:
            import matplotlib

            candidates.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")
        except ImportError:
            pass
        return cls(next((c for c in candidates if c.is_file()), None))

    def text(self, value: str) -> str:
        """``value`` as the fonts can draw it: the core fonts hold latin-1 only."""
        if self.path is not None:
            return value
        folded = unicodedata.normalize("NFKD", value)
        folded = folded.translate(
            {0x2018: "'", 0x2019: "'", 0x201C: '"', 0x201D: '"', 0x2013: "-", 0x2014: "-"}
        )
        return folded.encode("latin-1", "ignore").decode("latin-1")

    def pdf(self, size: float) -> Any:
        from fpdf import FPDF

        pdf = FPDF(format="A4")
        pdf.set_margins(MARGIN_MM, MARGIN_MM, MARGIN_MM)
        pdf.set_auto_page_break(True, margin=MARGIN_MM)
        if self.path is not None:
            pdf.add_font("DejaVu", fname=str(self.path))
            pdf.set_font("DejaVu", size=size)
        else:
            pdf.set_font("Helvetica", size=size)
        return pdf

    def image_font(self, px: int) -> Any:
        from PIL import ImageFont

        if self.path is not None:
            return ImageFont.truetype(str(self.path), px)
        return ImageFont.load_default(px)


# -- documents ------------------------------------------------------------------------------------


@dataclass
class Doc:
    """A generated file, its truth (text, or table rows) and its page count."""

    path: Path
    pages: int
    truth: str = ""
    rows: list[list[Any]] = field(default_factory=list)


def write_text_pdfs(folder: Path, paragraphs: list[str], fonts: Fonts, chars_per_doc: int) -> list[Doc]:
    from fpdf.enums import XPos, YPos

    folder.mkdir(parents=True, exist_ok=True)
    groups: list[list[str]] = [[]]
    for p in paragraphs:
        if sum(len(q) for q in groups[-1]) >= chars_per_doc:
            groups.append([])
        groups[-1].append(fonts.text(p))
    docs = []
    for number, group in enumerate(groups, start=1):
        pdf = fonts.pdf(FONT_PT)
        pdf.add_page()
        for p in group:
            pdf.multi_cell(
                0, FONT_PT * LINE_SPACING * MM_PER_INCH / 72, p, new_x=XPos.LMARGIN, new_y=YPos.NEXT
            )
            pdf.ln(2)
        path = folder / f"essay-{number:02d}.pdf"
        pdf.output(str(path))
        docs.append(Doc(path, pdf.page_no(), truth=" ".join(group)))
    return docs


def _px(mm: float, dpi: int) -> int:
    return round(mm / MM_PER_INCH * dpi)


def wrap_lines(paragraphs: list[str], font: Any, width: int) -> list[str]:
    """The paragraphs broken into lines no wider than ``width`` pixels, at spaces (a word too long
    for a line is broken between characters); a paragraph ends with an empty line."""
    lines: list[str] = []
    for p in paragraphs:
        line = ""
        for word in p.split():
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while font.getlength(word) > width:
                cut = max(1, next(i for i in range(len(word), 0, -1) if font.getlength(word[:i]) <= width))
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        if line:
            lines.append(line)
        lines.append("")
    return lines


def render_pages(
    paragraphs: list[str], fonts: Fonts, dpi: int, pages: int | None, size_mm: tuple[float, float] = A4_MM
) -> list[tuple[Any, str]]:
    """Page images (grayscale, ``size_mm`` at ``dpi``) of the paragraphs in the fonts at 11 pt, and
    each page's text; at most ``pages`` pages, or as many as the text fills when None."""
    from PIL import Image, ImageDraw

    font_px = round(FONT_PT / 72 * dpi)
    font = fonts.image_font(font_px)
    line_px = round(font_px * LINE_SPACING)
    width, height = _px(size_mm[0], dpi), _px(size_mm[1], dpi)
    margin = _px(MARGIN_MM, dpi)
    per_page = max(1, (height - 2 * margin) // line_px)
    lines = wrap_lines([fonts.text(p) for p in paragraphs], font, width - 2 * margin)
    made: list[tuple[Any, str]] = []
    for start in range(0, len(lines), per_page):
        if pages is not None and len(made) >= pages:
            break
        page_lines = lines[start : start + per_page]
        if not any(page_lines):
            continue
        image = Image.new("L", (width, height), 255)
        draw = ImageDraw.Draw(image)
        for i, line in enumerate(page_lines):
            draw.text((margin, margin + i * line_px), line, font=font, fill=0)
        made.append((image, " ".join(line for line in page_lines if line)))
    return made


def render_strip(text: str, fonts: Fonts, dpi: int) -> Any:
    """One passage as an image as wide as an A4 page and as tall as its lines (a slip, a receipt)."""
    from PIL import Image, ImageDraw

    font_px = round(FONT_PT / 72 * dpi)
    font = fonts.image_font(font_px)
    line_px = round(font_px * LINE_SPACING)
    width, margin = _px(A4_MM[0], dpi), _px(MARGIN_MM / 2, dpi)
    lines = [line for line in wrap_lines([fonts.text(text)], font, width - 2 * margin) if line]
    image = Image.new("L", (width, 2 * margin + len(lines) * line_px), 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * line_px), line, font=font, fill=0)
    return image


def write_scans(
    folder: Path, paragraphs: list[str], fonts: Fonts, dpi: int, pages: int, size_mm: tuple[float, float]
) -> dict[str, list[Doc]]:
    """The same pages as one image-only PDF and as one PNG per page."""
    folder.mkdir(parents=True, exist_ok=True)
    rendered = render_pages(paragraphs, fonts, dpi, pages, size_mm)
    pdf_path = folder / f"scan-{dpi}dpi.pdf"
    images = [image for image, _ in rendered]
    images[0].save(pdf_path, "PDF", resolution=float(dpi), save_all=True, append_images=images[1:])
    pngs = []
    for number, (image, truth) in enumerate(rendered, start=1):
        path = folder / f"scan-{dpi}dpi-p{number}.png"
        image.save(path, dpi=(dpi, dpi))
        pngs.append(Doc(path, 1, truth=truth))
    pdf = [Doc(pdf_path, len(rendered), truth=" ".join(t for _, t in rendered))]
    return {f"scan PDF {dpi} dpi": pdf, f"PNG {dpi} dpi": pngs}


def table_rows(paragraphs: list[str], count: int, seed: int = 7) -> list[list[Any]]:
    """``count`` rows under ``TABLE_HEADER``: text cells from the essay's words, integers and
    one-decimal numbers."""
    rng = random.Random(seed)
    words = sorted({w for p in paragraphs for w in re.findall(r"\b[A-Za-z]{4,9}\b", p)})
    rows = []
    for i in range(1, count + 1):
        rows.append(
            [
                f"R-{i:03d}",
                rng.choice(words).title(),
                " ".join(rng.sample(words, 2)),
                rng.randint(1_000, 9_999_999),
                round(rng.uniform(10, 9_999), 1),
                rng.randint(20, 95),
                " ".join(rng.sample(words, 3)),
            ]
        )
    return rows


def write_tables(folder: Path, rows: list[list[Any]], fonts: Fonts) -> dict[str, list[Doc]]:
    """The rows, under ``TABLE_HEADER``, as an HTML page, a DOCX, a PDF, an XLSX and a CSV, each
    with a sentence before and after the table where the format has running text."""
    folder.mkdir(parents=True, exist_ok=True)
    header = TABLE_HEADER
    before, after = "Cities in this survey, with their figures.", "Figures are rounded."
    made: dict[str, list[Doc]] = {}

    from html import escape

    cells = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Survey</title></head><body>"
        "<header><nav><a href='/'>Home</a> | <a href='/hr'>HR</a> | <a href='/survey'>Survey</a></nav>"
        f"</header><main><h1>Survey</h1><p>{before}</p><table><thead><tr>{cells}</tr></thead>"
        f"<tbody>\n{body}\n</tbody></table><p>{after}</p></main><footer>Copyright notice</footer>"
        "</body></html>"
    )
    path = folder / "table.html"
    path.write_text(page, encoding="utf-8")
    made["HTML"] = [Doc(path, 1, rows=rows)]

    import docx

    document = docx.Document()
    document.add_heading("Survey", level=1)
    document.add_paragraph(before)
    table = document.add_table(rows=len(rows) + 1, cols=len(header))
    for r, values in enumerate([header, *rows]):
        for c, value in enumerate(values):
            table.cell(r, c).text = str(value)
    document.add_paragraph(after)
    path = folder / "table.docx"
    document.save(str(path))
    made["DOCX"] = [Doc(path, 1, rows=rows)]

    pdf = fonts.pdf(9)
    pdf.add_page()
    pdf.multi_cell(0, 6, before)
    pdf.ln(2)
    from fpdf.fonts import FontFace

    # Plain headings: bold would need DejaVu Sans Bold as well.
    plain = FontFace(emphasis="")
    widths = (14, 22, 36, 20, 20, 18, 40)
    with pdf.table(col_widths=widths, text_align="LEFT", headings_style=plain) as pdf_table:
        for values in [header, *rows]:
            pdf_row = pdf_table.row()
            for value in values:
                pdf_row.cell(fonts.text(str(value)))
    pdf.ln(2)
    pdf.multi_cell(0, 6, after)
    path = folder / "table.pdf"
    pdf.output(str(path))
    made["PDF"] = [Doc(path, pdf.page_no(), rows=rows)]

    import openpyxl  # type: ignore[import-untyped]

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Survey"
    sheet.append(header)
    for values in rows:
        sheet.append(values)
    path = folder / "table.xlsx"
    workbook.save(str(path))
    made["XLSX"] = [Doc(path, 1, rows=rows)]

    path = folder / "table.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    made["CSV"] = [Doc(path, 1, rows=rows)]
    return made


# -- reading and measuring ------------------------------------------------------------------------


def read_limits(ocr: str) -> Any:
    """``ReadLimits`` with ``ocr`` when this checkout's readers have that setting."""
    from indexer.ingestion.readers import ReadLimits

    names = {f.name for f in dataclasses.fields(ReadLimits)}
    return ReadLimits(ocr=ocr) if "ocr" in names else ReadLimits()  # type: ignore[call-arg]


def cpu_seconds() -> float:
    """CPU time of this process and of its waited-for children (an OCR engine's subprocess)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def read_route(docs: list[Doc], limits: Any, warm_up: Doc | None = None) -> dict[str, Any]:
    """Read every document of a route with ``read_file``: its texts, skip reasons, wall and CPU
    seconds (after one untimed read of ``warm_up``, which loads the route's libraries and models)."""
    from indexer.ingestion.readers import UnreadableFile, read_file

    if warm_up is not None:
        with contextlib.suppress(UnreadableFile):
            read_file(warm_up.path, limits)
    texts, reasons = [], []
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    for doc in docs:
        try:
            texts.append("\n\n".join(d.text for d in read_file(doc.path, limits)))
        except UnreadableFile as exc:
            texts.append("")
            reasons.append(str(exc))
    wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    pages = sum(d.pages for d in docs)
    return {
        "files": len(docs),
        "pages": pages,
        "skipped": len(reasons),
        "skip_reason": reasons[0] if reasons else None,
        "seconds": round(wall, 3),
        # A route whose every file was skipped has no speed to speak of.
        "pages_per_s": round(pages / wall, 2) if wall > 0 and len(reasons) < len(docs) else None,
        "cpu_s_per_page": round(cpu / pages, 4) if pages and len(reasons) < len(docs) else None,
        "texts": texts,
    }


def measure_text(docs: list[Doc], limits: Any, warm_up: Doc | None, goal: float | None) -> dict[str, Any]:
    result = read_route(docs, limits, warm_up)
    errors = truth_chars = 0
    for doc, text in zip(docs, result.pop("texts"), strict=True):
        e, n = char_errors(text, doc.truth)
        errors, truth_chars = errors + e, truth_chars + n
    cer = errors / max(1, truth_chars)
    return {**result, "cer": round(cer, 5), "goal": goal, "passed": None if goal is None else cer <= goal}


def measure_table(docs: list[Doc], limits: Any) -> dict[str, Any]:
    result = read_route(docs, limits, warm_up=docs[0])
    scores = [table_fidelity(t, TABLE_HEADER, d.rows) for d, t in zip(docs, result.pop("texts"), strict=True)]
    fidelity = sum(scores) / len(scores)
    return {
        **result,
        "rows": sum(len(d.rows) for d in docs),
        "fidelity": round(fidelity, 4),
        "goal": TABLE_FIDELITY_GOAL,
        "passed": fidelity >= TABLE_FIDELITY_GOAL,
    }


# -- retrieval on a scanned corpus ----------------------------------------------------------------


def retrieval_set(count: int) -> tuple[list[tuple[str, str]], list[tuple[str, set[str]]]]:
    """``count`` MS MARCO passages, each the best-graded (>= 2) one of a judged query not yet taken,
    and those queries with the passages among them relevant to each."""
    from indexer.eval.datasets import load_dataset, read_corpus

    judged = load_dataset(MSMARCO, queries="queries.judged.jsonl", qrels="qrels/test.normalized.tsv")
    texts = {r.id: r.content() for r in read_corpus(MSMARCO / "corpus.jsonl")}
    chosen: dict[str, str] = {}
    asked: list[tuple[str, dict[str, int]]] = []
    for q in sorted(judged.questions, key=lambda q: int(q.id) if q.id.isdigit() else q.id):
        if len(chosen) >= count:
            break
        graded = sorted(
            (-grade, doc) for doc, grade in q.qrels.items() if grade >= RELEVANT_GRADE and doc in texts
        )
        pick = next((doc for _, doc in graded if doc not in chosen), None)
        if pick is None:
            continue
        chosen[pick] = texts[pick]
        asked.append((q.question, q.qrels))
    queries = [
        (question, {d for d, g in qrels.items() if g >= RELEVANT_GRADE and d in chosen})
        for question, qrels in asked
    ]
    return list(chosen.items()), queries


def write_config(folder: Path, corpus: Path, ocr: str) -> Path:
    from indexer.config.models import DataConfig

    data: dict[str, Any] = {"input_dir": str(corpus)}
    if "ocr" in DataConfig.model_fields:
        data["ocr"] = ocr
    config = {
        "data": data,
        "vector_store": {"persist_dir": str(folder / "storage"), "collection": "extraction"},
        "llm": {"provider": "none"},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def hit_at_k(config: Path, queries: list[tuple[str, set[str]]]) -> dict[str, Any]:
    """Build the index of ``config`` and ask every query: the share with a relevant passage (named
    by its file's stem) among the first ``TOP_K``; a build that fails or indexes nothing scores 0."""
    from indexer import Indexer
    from indexer.errors import IndexerError

    ix = Indexer.from_config(config)
    wall0 = time.perf_counter()
    try:
        summary = ix.build(rebuild=True)
    except IndexerError as exc:
        # The error's first clause ("no documents to index"), without the run's temporary paths.
        return {"hit_at_5": 0.0, "documents": 0, "skipped": None, "error": str(exc).split(":")[0]}
    # Wall time only: the build's chunking workers, where its readers run, are forked from a fork
    # server, not from this process, so their CPU time never reaches this process's rusage.
    wall = time.perf_counter() - wall0
    hits = 0
    if summary.chunks:
        for question, relevant in queries:
            found = {Path(s.file).stem for s in ix.retrieve(question, top_k=TOP_K)}
            hits += bool(found & relevant)
    reasons = [s.get("reason", "") for s in summary.skipped]
    return {
        "hit_at_5": round(hits / max(1, len(queries)), 4),
        "documents": summary.documents,
        "skipped": len(summary.skipped),
        "skip_reason": reasons[0] if reasons else None,
        "build_s": round(wall, 2),
    }


def measure_retrieval(work: Path, fonts: Fonts, count: int, dpi: int, ocr: str) -> dict[str, Any]:
    passages, queries = retrieval_set(count)
    text_dir, scan_dir = work / "retrieval-text", work / f"retrieval-png-{dpi}dpi"
    text_dir.mkdir(parents=True, exist_ok=True)
    scan_dir.mkdir(parents=True, exist_ok=True)
    for doc_id, text in passages:
        (text_dir / f"{doc_id}.txt").write_text(fonts.text(text), encoding="utf-8")
        render_strip(text, fonts, dpi).save(scan_dir / f"{doc_id}.png", dpi=(dpi, dpi))
    as_text = hit_at_k(write_config(work / "index-text", text_dir, ocr), queries)
    scanned = hit_at_k(write_config(work / "index-scanned", scan_dir, ocr), queries)
    ratio = scanned["hit_at_5"] / as_text["hit_at_5"] if as_text["hit_at_5"] else None
    return {
        "passages": len(passages),
        "queries": len(queries),
        "dpi": dpi,
        "text": as_text,
        "scanned": scanned,
        "ratio": None if ratio is None else round(ratio, 4),
        "goal": RETRIEVAL_RATIO_GOAL,
        "passed": ratio is not None and ratio >= RETRIEVAL_RATIO_GOAL,
    }


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Sizes:
    text_chars: int  # of the essay, into text PDFs
    chars_per_pdf: int
    scan_pages: int  # per scan route and dpi
    scan_size_mm: tuple[float, float]
    table_rows: int
    passages: int


DEFAULT = Sizes(
    text_chars=10**9, chars_per_pdf=9_000, scan_pages=2, scan_size_mm=A4_MM, table_rows=36, passages=40
)
# A6 pages (a quarter of A4's text) keep the smoke test's OCR short.
QUICK = Sizes(
    text_chars=6_000,
    chars_per_pdf=6_000,
    scan_pages=1,
    scan_size_mm=(105.0, 148.0),
    table_rows=12,
    passages=6,
)


def run(out: Path, sizes: Sizes, dpis: Sequence[int], ocr: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Generate the documents under ``out``, read and measure them: the report as a dict."""
    from benchmarks.machine import cpu_description

    for needed in (ESSAY, MSMARCO / "corpus.jsonl"):
        if not needed.exists():
            raise SystemExit(
                f"benchmarks.extraction: {needed} is missing. The benchmark makes its documents from the "
                f"public text in ../shared/data (beside the checkout: {SHARED_DATA})."
            )
    fonts = Fonts.find()
    limits = read_limits(ocr)
    report: dict[str, Any] = {
        "cpu": cpu_description(),
        "font": fonts.path.name if fonts.path else "core PDF font / PIL default (latin-1 text)",
        "ocr_setting": ocr if "ocr" in {f.name for f in dataclasses.fields(type(limits))} else None,
        "text": {},
        "tables": {},
    }
    paragraphs = essay_paragraphs()
    kept, total = [], 0
    for p in paragraphs:
        if total >= sizes.text_chars:
            break
        kept.append(p)
        total += len(p)

    log("text PDFs ...")
    text_pdfs = write_text_pdfs(out / "text-pdf", kept, fonts, sizes.chars_per_pdf)
    report["text"]["text PDF"] = measure_text(text_pdfs, limits, text_pdfs[0], TEXT_PDF_CER_GOAL)

    # One short line as each scan route's warm-up: it loads the OCR models without OCR-ing a page.
    for dpi in dpis:
        warm = out / f"warm-up-{dpi}dpi"
        warm.mkdir(parents=True, exist_ok=True)
        strip = render_strip("Warm-up line of text.", fonts, dpi)
        strip.save(warm / "warm.png", dpi=(dpi, dpi))
        strip.save(warm / "warm.pdf", "PDF", resolution=float(dpi))
        scans = write_scans(
            out / f"scans-{dpi}dpi", paragraphs, fonts, dpi, sizes.scan_pages, sizes.scan_size_mm
        )
        for route, docs in scans.items():
            log(f"{route} ...")
            warm_doc = Doc(warm / ("warm.pdf" if route.startswith("scan PDF") else "warm.png"), 1)
            goal = SCAN_CER_GOAL if dpi == SCAN_GOAL_DPI else None
            report["text"][route] = measure_text(docs, limits, warm_doc, goal)

    tables = write_tables(out / "tables", table_rows(paragraphs, sizes.table_rows), fonts)
    for fmt, docs in tables.items():
        log(f"{fmt} table ...")
        report["tables"][fmt] = measure_table(docs, limits)

    retrieval_dpi = SCAN_GOAL_DPI if SCAN_GOAL_DPI in dpis else max(dpis)
    log(f"retrieval: {sizes.passages} passages as text and as {retrieval_dpi}-dpi PNG scans ...")
    report["retrieval"] = measure_retrieval(out / "retrieval", fonts, sizes.passages, retrieval_dpi, ocr)
    report["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return report


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def _verdict(passed: bool | None) -> str:
    return "" if passed is None else ("pass" if passed else "FAIL")


def _note(r: dict[str, Any]) -> str:
    if not r.get("skipped"):
        return ""
    return f"{r['skipped']} of {r['files']} files skipped: {r['skip_reason']}"


def rows_of(report: dict[str, Any]) -> list[list[Any]]:
    """One row per route: route, pages, measure, result, goal, verdict, pages/s, CPU s/page, note."""
    rows: list[list[Any]] = []
    for route, r in report["text"].items():
        goal = f"<= {_percent(r['goal'])}" if r["goal"] is not None else None
        rows.append(
            [route, r["pages"], "CER", _percent(r["cer"]), goal, _verdict(r["passed"]),
             r["pages_per_s"], r["cpu_s_per_page"], _note(r)]
        )  # fmt: skip
    for fmt, r in report["tables"].items():
        rows.append(
            [f"{fmt} table ({r['rows']} rows)", r["pages"], "row fidelity", f"{r['fidelity']:.3f}",
             f">= {r['goal']}", _verdict(r["passed"]), r["pages_per_s"], r["cpu_s_per_page"], _note(r)]
        )  # fmt: skip
    t = report["retrieval"]
    scanned, text = t["scanned"], t["text"]
    note = scanned.get("error") or (
        f"{scanned['skipped']} of {t['passages']} scans skipped: {scanned['skip_reason']}"
        if scanned.get("skipped")
        else ""
    )
    pages_per_s = round(t["passages"] / scanned["build_s"], 2) if scanned.get("build_s") else None
    ratio = "–" if t["ratio"] is None else f"{t['ratio']:.3f}"
    rows.append(
        [f"retrieval: {t['passages']} passages as {t['dpi']}-dpi PNGs, {t['queries']} queries",
         t["passages"], "hit@5 scanned / text",
         f"{ratio} ({scanned['hit_at_5']:.3f} / {text['hit_at_5']:.3f})",
         f">= {t['goal']}", _verdict(t["passed"]), pages_per_s, None, note]
    )  # fmt: skip
    return rows


COLUMNS = ["route", "pages", "measure", "result", "goal", "met", "pages/s", "CPU s/page", "note"]


def print_report(report: dict[str, Any]) -> None:
    cpu = report["cpu"]
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, load {cpu['load_1min']}")
    print(f"CPU flags: {' '.join(cpu['flags'])}")
    ocr = report["ocr_setting"]
    print(f"font: {report['font']}; readers' OCR setting: {ocr if ocr else 'none (ReadLimits has no ocr)'}")
    print(f"{'route':<34} {'pages':>5}  {'measure':<22} {'result':<24} {'goal':<9} {'':<4}"
          f" {'pages/s':>8} {'CPU s/page':>10}  note")  # fmt: skip
    for row in rows_of(report):
        route, pages, measure, result, goal, verdict, speed, cpu_s, note = row
        print(
            f"{route:<34} {pages:>5}  {measure:<22} {result:<24} {goal or '':<9} {verdict:<4}"
            f" {speed if speed is not None else '–':>8} {cpu_s if cpu_s is not None else '–':>10}  {note}"
        )
    print(f"peak RSS {report['max_rss_mb']} MB")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer and smaller documents (a smoke test)")
    parser.add_argument(
        "--dpi", type=int, nargs="+", default=[150, 300], help="scan resolutions (default: 150 300)"
    )
    parser.add_argument(
        "--scan-pages", type=int, help="pages per scan route and resolution (default 2; --quick: 1)"
    )
    parser.add_argument(
        "--passages", type=int, help="passages of the retrieval corpus, at most 43 (default 40; --quick: 6)"
    )
    parser.add_argument(
        "--ocr",
        default="auto",
        choices=["auto", "off", "always"],
        help="the readers' OCR setting (data.ocr), where this checkout has it",
    )
    parser.add_argument(
        "--out", type=Path, help="where the generated documents go (default: a temporary folder)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_markdown_flag(parser)
    args = parser.parse_args(argv)
    if any(d < 50 or d > 1200 for d in args.dpi):
        parser.error("--dpi takes resolutions between 50 and 1200")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sizes = dataclasses.replace(QUICK if args.quick else DEFAULT)
    if args.scan_pages is not None:
        sizes.scan_pages = max(1, args.scan_pages)
    if args.passages is not None:
        sizes.passages = max(1, args.passages)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        report = run(args.out, sizes, sorted(set(args.dpi)), args.ocr, log)
    else:
        with tempfile.TemporaryDirectory(prefix="indexer-extraction-") as tmp:
            report = run(Path(tmp), sizes, sorted(set(args.dpi)), args.ocr, log)
    if args.json:
        print(json.dumps(report))
    elif args.markdown:
        print(markdown_table(COLUMNS, rows_of(report)))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
