"""How every command runs its work: warnings on stderr, a user error (``IndexerError``) as one
paragraph and its exit code (2) with no traceback, Ctrl-C as "interrupted" and exit 130, and the
``Indexer`` opened from a config and its ``--set`` overrides."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from indexer.cli.output import PrintableFormatter, echo
from indexer.errors import IndexerError
from indexer.forked import CTRL_C_THREAD

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
        _said_interrupted.set()
        raise typer.Exit(130) from None


# Seconds a command that ends on Ctrl-C (``ctrl_c_ends_the_process``) has to stop by itself.
CTRL_C_GRACE_SECONDS = 1.0
_said_interrupted = threading.Event()


@contextmanager
def ctrl_c_ends_the_process(grace: float = CTRL_C_GRACE_SECONDS) -> Iterator[None]:
    """For a command whose work runs threads and child processes (``build``): the first Ctrl-C
    raises KeyboardInterrupt, so the work stops and cleans up (its threads, its children, the
    writer lock), and the process then ends with exit 130 by ``os._exit``. It ends so at once at a
    second Ctrl-C, and ``grace`` seconds after the first when the work has not stopped by then (a
    Chroma write under way: the index is left as a killed build leaves it, which the next build
    recovers).

    Not the interpreter's own exit: it waits for every non-daemon thread (a second Ctrl-C there
    printed a ``threading._shutdown`` traceback), and its teardown of native libraries whose
    threads still ran aborted the process ("terminate called without an active exception",
    SIGABRT). Nothing is lost to it: a build commits as it goes, and its children end with it
    (``ingestion/build_processes.py``).

    Signals are counted by a thread of their own, woken by Python's C-level handler: the
    KeyboardInterrupt waits for the main thread's current C call (loading the model, opening
    Chroma) to return, the count and the grace period do not."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; there the caller handles Ctrl-C
        return
    _said_interrupted.clear()
    first = threading.Event()
    receive, send = socket.socketpair()
    send.setblocking(False)

    def on_sigint(signum: int, frame: Any) -> None:
        if first.is_set():
            _exit_interrupted()
        first.set()
        raise KeyboardInterrupt

    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    previous_fd = signal.set_wakeup_fd(send.fileno(), warn_on_full_buffer=False)
    watcher = threading.Thread(target=_count_ctrl_c, args=(receive, grace), name=CTRL_C_THREAD, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous_handler)
        send.close()  # ends the watcher
        if first.is_set():
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe
                    stream.flush()
            _exit_interrupted()
        watcher.join()
        receive.close()


def _count_ctrl_c(receive: socket.socket, grace: float) -> None:
    """Ends the process at the second SIGINT, or ``grace`` seconds after the first."""
    deadline: float | None = None
    while True:
        receive.settimeout(None if deadline is None else max(0.0, deadline - time.monotonic()))
        try:
            data = receive.recv(64)
        except TimeoutError:
            _exit_interrupted()
        except OSError:
            return
        if not data:
            return  # the command ended
        for signum in data:
            if signum != signal.SIGINT:
                continue
            if deadline is not None:
                _exit_interrupted()
            deadline = time.monotonic() + grace


def _exit_interrupted() -> None:
    """End the process now, with exit 130. Only ``os.write``: this runs in a signal handler or a
    thread of its own, either of which may have cut into a write of ``sys.stderr``."""
    try:
        if os.isatty(2):
            os.write(2, b"\x1b[?25h")  # show the cursor again: a progress bar hides it
        if not _said_interrupted.is_set():
            os.write(2, b"\ninterrupted\n" if os.isatty(2) else b"interrupted\n")
    except OSError:
        pass
    finally:
        os._exit(130)


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
    for noisy in ("chromadb", "httpx", "sentence_transformers", "transformers", "urllib3", "pdfminer"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
