"""How every command runs its work: warnings on stderr, a user error (``IndexerError``) as one
paragraph and its exit code (2) with no traceback, and the ``Indexer`` opened from a config and
its ``--set`` overrides."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from indexer.cli.output import PrintableFormatter, echo
from indexer.errors import IndexerError

if TYPE_CHECKING:
    from indexer.api import Indexer

T = TypeVar("T")


def run(fn: Callable[[], T]) -> T:
    _setup_logging()
    with _user_errors():
        return fn()


def open_indexer(config: Path, overrides: list[str] | None, **extra: Any) -> Indexer:
    """``extra``: config keys a command's own options set (``None`` leaves the config's value)."""
    from indexer.api import Indexer
    from indexer.config import parse_set_options

    values = parse_set_options(overrides or [])
    values.update({k: v for k, v in extra.items() if v is not None})
    ix = Indexer.from_config(config, values)
    _build_folder_first(ix, config)
    return ix


# The commands that need an index to do anything: given a folder never indexed, they build it
# first instead of stopping at "no index". The others keep the index as it is (``build`` and
# ``watch`` sync it themselves, ``status`` only reports).
_BUILDS_FIRST = frozenset({"query", "chat", "serve", "mcp"})


def _build_folder_first(ix: Indexer, config: Path) -> None:
    from indexer.cli.options import FOLDER_ARGUMENT

    given = FOLDER_ARGUMENT.get()
    if given is None or given.made.config != config or given.command not in _BUILDS_FIRST:
        return
    if ix.index.current() is not None:
        return
    made = given.made
    from indexer.progress import should_show

    # stderr only: stdout carries --json and the MCP protocol.
    echo(f"note: no index yet for {made.folder}: building it first.", err=True)
    summary = ix.build(show_progress=should_show())
    echo(
        f"Indexed {summary.documents} documents, {summary.chunks} chunks in {summary.seconds:.1f} s "
        f"(into {ix.index.location}; `indexer build` or `indexer watch` on the folder keeps it in step)",
        err=True,
    )


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except IndexerError as exc:
        echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        echo("interrupted", err=True)
        raise typer.Exit(130) from None


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("warning: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    for noisy in ("chromadb", "httpx", "sentence_transformers", "transformers", "urllib3", "pypdf"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
