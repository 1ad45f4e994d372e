"""The arguments and options that several commands share, declared once."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from indexer.config.folder import FolderConfig


@dataclass(frozen=True)
class FolderArgument:
    """The folder a command was given as its CONFIG, and the command: ``running.open_indexer``
    builds a missing index first for the commands that need one."""

    made: FolderConfig
    command: str | None


# Set by every CONFIG argument as it is parsed (None for a config file), so a command run after
# another in the same process (the tests' in-process runner) never sees the earlier one's folder.
FOLDER_ARGUMENT: ContextVar[FolderArgument | None] = ContextVar("indexer_folder_argument", default=None)


def resolve_config(ctx: typer.Context, value: Path | None) -> Path | None:
    """A CONFIG that is a folder of documents stands for that folder's config: the one in the
    user's config directory, written (as `indexer init` writes it) the first time, and reused
    after. Every command taking a config resolves it here, so each accepts a folder alike."""
    FOLDER_ARGUMENT.set(None)
    if value is None or not value.expanduser().is_dir():
        return value
    from indexer.cli.output import echo
    from indexer.config.folder import ensure_folder_config
    from indexer.errors import IndexerError

    try:
        made = ensure_folder_config(value)
    except IndexerError as exc:  # parsing runs before the command's own error handling
        echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    if made.created:
        echo(
            f"note: made a config for {made.folder}: {made.config} (edit it to change what is indexed and "
            f"how; the index goes to {made.index}). Later calls on this folder reuse it.",
            err=True,
        )
    FOLDER_ARGUMENT.set(FolderArgument(made, ctx.command.name))
    return made.config


ConfigArg = Annotated[
    Path,
    typer.Argument(
        help="YAML config file, or a folder of documents (its config is made the first time).",
        show_default=False,
        callback=resolve_config,
    ),
]
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
