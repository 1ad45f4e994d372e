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
    return Indexer.from_config(config, values)


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


class OncePerRun(logging.Filter):
    """Each distinct line prints once per run: a watcher or a server syncs and answers many times,
    and the same warning (a skipped file, a model without a chat template) is news only once."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def show_info(logger: str) -> None:
    """Let one logger's info lines through (``serve --watch``: its syncs are news, not warnings)."""
    logging.getLogger(logger).setLevel(logging.INFO)


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("%(levelname)s: %(message)s"))
    handler.addFilter(OncePerRun())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    for noisy in ("chromadb", "httpx", "sentence_transformers", "transformers", "urllib3", "pypdf"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
