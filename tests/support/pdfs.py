"""PDFs written with fpdf2 from known text and tables, so a test knows what reading them must give."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

Block = str | Sequence[Sequence[str]]
"""A paragraph, or a table's rows (the first one its header)."""


def write_pdf(path: Path, pages: Sequence[Sequence[Block]], title: str = "") -> Path:
    """A text PDF (Helvetica, A4): each page's blocks in order, tables ruled as fpdf2 draws them."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_font("helvetica", size=11)
    if title:
        pdf.set_title(title)
    for blocks in pages:
        pdf.add_page()
        for block in blocks:
            if isinstance(block, str):
                pdf.multi_cell(0, 6, block, new_x="LMARGIN", new_y="NEXT")
            else:
                with pdf.table() as table:
                    for row in block:
                        cells = table.row()
                        for value in row:
                            cells.cell(value)
            pdf.ln(4)
    pdf.output(str(path))
    return path
