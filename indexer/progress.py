"""Progress bars for long work: rich on a terminal, silent otherwise."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Progress(Protocol):
    def advance(self, amount: int = 1) -> None: ...

    def set_total(self, total: int) -> None: ...

    def describe(self, description: str) -> None: ...


class _Silent:
    def advance(self, amount: int = 1) -> None:
        pass

    def set_total(self, total: int) -> None:
        pass

    def describe(self, description: str) -> None:
        pass


class _RichTask:
    def __init__(self, bar: object, task_id: int) -> None:
        self._bar = bar
        self._task = task_id

    def advance(self, amount: int = 1) -> None:
        self._bar.advance(self._task, amount)  # type: ignore[attr-defined]

    def set_total(self, total: int) -> None:
        self._bar.update(self._task, total=total)  # type: ignore[attr-defined]

    def describe(self, description: str) -> None:
        from indexer.terminal import rich_safe

        self._bar.update(self._task, description=rich_safe(description))  # type: ignore[attr-defined]


def should_show(quiet: bool = False) -> bool:
    """Bars only on an interactive terminal, and never when output is machine-read."""
    return not quiet and sys.stderr.isatty()


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool) -> Iterator[Progress]:
    if not enabled:
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    from indexer.terminal import rich_safe

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with RichProgress(*columns, console=Console(stderr=True), transient=True) as bar:
        # Descriptions may carry a dataset's folder name: rich would read its brackets as markup.
        yield _RichTask(bar, bar.add_task(rich_safe(description), total=total))
