"""``indexer init FOLDER``: a folder of documents is enough to start."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from indexer.cli.output import echo
from indexer.cli.running import run


def init(
    folder: Annotated[Path, typer.Argument(help="The folder of documents to index.", show_default=False)],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Write the config here (default: one file per folder in your config directory, "
            "or $INDEXER_CONFIG_DIR).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write a fresh config over an existing one.")
    ] = False,
) -> None:
    """Write a commented config for FOLDER and print the next commands.

    The index will go to your data directory (or $INDEXER_DATA_DIR), never inside FOLDER. Every
    command that takes a config also takes FOLDER itself, and makes this config the first time."""

    def work() -> None:
        from indexer.config.folder import ensure_folder_config

        made = ensure_folder_config(folder, config, force=force)
        if made.created:
            echo(f"Wrote the config for {made.folder}: {made.config}")
            echo(f"  its index will go to {made.index}")
        else:
            echo(
                f"A config for {made.folder} exists already: {made.config} (kept; --force writes a fresh one)"
            )
        # With --config the folder alone would not find this file: the commands name the file.
        target = shlex.quote(str(config if config is not None else folder))
        echo("Next:")
        echo(f"  indexer build {target}      # index the documents (again after changes; or indexer watch)")
        echo(f'  indexer query {target} "What do these documents say about ...?"')
        echo(f"  indexer chat {target}       # follow-up questions")

    run(work)
