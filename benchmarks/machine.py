"""The machine every benchmark figure was measured on, printed beside the figures."""

from __future__ import annotations

import argparse
import datetime
import os
from collections.abc import Sequence
from typing import Any

# The SIMD extensions that decide embedding and llama.cpp speed on x86.
_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_description() -> dict[str, Any]:
    """CPU model, usable cores, the SIMD flags that matter here, and the load while measuring."""
    from indexer.cpu import cpu_count, cpu_flags, cpu_model

    flags = cpu_flags()
    return {
        "model": cpu_model(),
        "cores": cpu_count(),
        "flags": [f for f in _FLAGS if f in flags],
        "load_1min": round(os.getloadavg()[0], 2),
    }


def add_markdown_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="also print the figures as a Markdown table, with the date and CPU model (docs/performance.md)",
    )


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], gpu: str | None = None) -> str:
    """The figures a benchmark computed as Markdown table rows, each ending with the date (UTC) and
    the machine (CPU model, cores and SIMD flags), so docs/performance.md is refreshed by pasting
    what a run prints."""
    cpu = cpu_description()
    machine = f"{cpu['model']}, {cpu['cores']} cores ({' '.join(cpu['flags']) or 'no SIMD flags listed'})"
    machine += f", {gpu}" if gpu else ""
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    lines = [
        "| " + " | ".join([*columns, "date", "machine"]) + " |",
        "|" + "---|" * (len(columns) + 2),
    ]
    lines += ["| " + " | ".join([*(_cell(c) for c in row), today, machine]) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:,.1f}"
    return str(value).replace("|", "\\|")
