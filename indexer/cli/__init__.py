"""The command line: a thin layer over ``indexer.api.Indexer``, one module per command group
(``init``: init; ``index``: build, status, watch; ``ask``: query, chat; ``serving``: serve, mcp; ``doctor``:
doctor, config; ``evaluate``: eval). This module only composes them.

User errors (``IndexerError``) print one paragraph and exit 2, with no traceback.
"""

from __future__ import annotations

import sys

import typer

from indexer.cli import ask, doctor, evaluate, index, init, serving

app = typer.Typer(
    name="indexer",
    help="Build a local, private RAG index from a folder of documents, and ask it questions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# In this order in --help.
app.command()(init.init)
app.command()(index.build)
app.command()(ask.query)
app.command()(index.status)
app.command()(ask.chat)
app.command()(doctor.doctor)
app.command("config")(doctor.show_config)
app.command()(serving.serve)
app.command()(index.watch)
app.command("mcp")(serving.mcp)
app.add_typer(evaluate.eval_app, name="eval")


def main() -> None:
    from indexer.forked import allow_forks

    allow_forks()  # a cold command's start-up may use a child (query/prefetch.py, ingestion/chunk_ahead.py)
    try:
        app()
    except KeyboardInterrupt:
        # Ctrl-C before a command's own handling starts (while typer parses, or a command imports
        # its modules): the same word and exit code as later, not a traceback.
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
