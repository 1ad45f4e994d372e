"""The benchmarks' own measures, and a smoke run of ``benchmarks/extraction.py``: its report's shape,
never its figures (they measure whatever readers the checkout has)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from benchmarks.extraction import (
    COLUMNS,
    TABLE_HEADER,
    char_errors,
    levenshtein,
    main,
    markdown_tables,
    rows_of,
    table_fidelity,
)
from benchmarks.machine import markdown_table
from indexer.ingestion.tables import markdown_table as render_table
from tests.conftest import SHARED_DATA


def _distance(a: str, b: str) -> int:
    """The textbook dynamic programme, the reference for the bit-parallel one."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def test_levenshtein_is_exact() -> None:
    rng = random.Random(3)
    for _ in range(500):
        a = "".join(rng.choice("abc é") for _ in range(rng.randint(0, 70)))
        b = "".join(rng.choice("abcd é") for _ in range(rng.randint(0, 70)))
        assert levenshtein(a, b) == _distance(a, b)
    # Whitespace runs count as one space; the truth's length is the denominator.
    assert char_errors("Hello\n\n  world", "Hello world") == (0, 11)
    assert char_errors("", "abc") == (3, 3)


ROWS: list[list[Any]] = [
    ["R-001", "Oslo", "a | b", 1200, 3.5, 40, "note one"],
    ["R-002", "Rome", "c", 900, 12.0, 55, "two"],
]


def test_table_fidelity_counts_rows_under_their_header() -> None:
    table = render_table([TABLE_HEADER, *ROWS])
    assert table_fidelity(f"Before.\n\n{table}\n\nAfter.", TABLE_HEADER, ROWS) == 1.0
    # Numbers compare by value; a table split in two repeats its header in each piece.
    pieces = render_table([TABLE_HEADER, ROWS[0]]) + "\n\ntext\n\n" + render_table([TABLE_HEADER, ROWS[1]])
    assert table_fidelity(pieces.replace("12.0", "12"), TABLE_HEADER, ROWS) == 1.0
    # A row with its cells out of order, a table under another header, and one cell per line do not count.
    swapped = render_table([TABLE_HEADER, ROWS[0], [ROWS[1][1], ROWS[1][0], *ROWS[1][2:]]])
    assert table_fidelity(swapped, TABLE_HEADER, ROWS) == 0.5
    other = render_table([["x", *TABLE_HEADER[1:]], *ROWS])
    assert table_fidelity(other, TABLE_HEADER, ROWS) == 0.0
    lines = "\n".join(str(c) for row in [TABLE_HEADER, *ROWS] for c in row)
    assert table_fidelity(lines, TABLE_HEADER, ROWS) == 0.0
    assert markdown_tables(table)[0][1][0][2] == "a | b"


@pytest.mark.slow
@pytest.mark.shared_data(SHARED_DATA / "paul_graham_essay")
@pytest.mark.shared_data(SHARED_DATA / "msmarco_subset")
def test_extraction_benchmark_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--quick", "--json", "--out", str(tmp_path)])
    report = json.loads(capsys.readouterr().out)
    assert set(report["text"]) == {
        "text PDF",
        *(f"{route} {dpi} dpi" for route in ("scan PDF", "PNG") for dpi in (150, 300)),
    }
    for route in report["text"].values():
        assert route["pages"] >= 1 and route["cer"] >= 0
        assert route["passed"] in (True, False, None)
    assert set(report["tables"]) == {"HTML", "DOCX", "PDF", "XLSX", "CSV"}
    for table in report["tables"].values():
        assert 0 <= table["fidelity"] <= 1 and table["rows"] > 0
    retrieval = report["retrieval"]
    assert retrieval["passages"] == retrieval["queries"] > 0
    assert 0 <= retrieval["text"]["hit_at_5"] <= 1 and 0 <= retrieval["scanned"]["hit_at_5"] <= 1
    rows = rows_of(report)
    assert len(rows) == len(report["text"]) + len(report["tables"]) + 1
    assert all(len(row) == len(COLUMNS) for row in rows)
    lines = markdown_table(COLUMNS, rows).splitlines()
    assert len(lines) == 2 + len(rows) and all(line.count(" | ") >= len(COLUMNS) for line in lines[2:])
    written = {p.suffix for p in tmp_path.rglob("*") if p.is_file()}
    assert written >= {".pdf", ".png", ".html", ".docx", ".xlsx", ".csv"}
