"""The arguments and options that several commands share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: --set query.top_k=8 (repeatable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
FilterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        "-f",
        help="Only passages whose metadata match: path=GLOB, type=EXT, page=3, title=... (repeatable).",
    ),
]
ModeOpt = Annotated[
    str | None,
    typer.Option("--mode", help="Retrieval mode: vector, bm25 or hybrid (default: retrieval.mode)."),
]
TopKOpt = Annotated[int | None, typer.Option("--top-k", "-k", min=1, help="Passages to retrieve.")]
