"""Work in a forked child, for a cold command: two halves of its start-up that are mostly Python
imports, which threads would run one at a time under the GIL, take one core each this way
(``query/prefetch.py``: retrieval beside the model's loading; ``ingestion/chunk_ahead.py``: a small
build's chunking beside the opening of the index).

Only ever a help: a child that fails for any reason returns nothing, and the caller does the work
itself, which raises the same error with the same message it always did.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# Loaded by either half of a cold command; a process that holds one of them already has native
# threads (a thread pool, a runtime) that a fork would copy mid-work, and is warm anyway: nothing
# is forked then.
_NATIVE_THREADED = ("chromadb", "onnxruntime", "llama_cpp", "torch", "bm25s")


# The name of the CLI's Ctrl-C counter thread (``cli/running.py``), blocked in a socket's ``recv``.
CTRL_C_THREAD = "indexer-ctrl-c"
# Threads that only ever wait in a system call and hold no lock a child could need: a fork beside
# them is as clean as one alone.
_WAITING_THREADS = frozenset({CTRL_C_THREAD})


# Forks are for a CLI command's own process (``cli.main`` allows them), never for a program that
# imports indexer as a library: its threads, native libraries and open resources are its own.
_allowed = False


def allow_forks() -> None:
    """Called by the console script's entry point: this process is an indexer command."""
    global _allowed
    _allowed = True


def can_fork() -> bool:
    """Whether a child forked now starts clean: an indexer command's process on Linux, no other
    thread at work, no threaded native library loaded."""
    return (
        _allowed
        and sys.platform == "linux"
        and hasattr(os, "fork")
        and all(t is threading.current_thread() or t.name in _WAITING_THREADS for t in threading.enumerate())
        and not any(name in sys.modules for name in _NATIVE_THREADED)
    )


class ForkedCall:
    """``work()`` run in a forked child; ``result()`` waits for its value."""

    def __init__(self, work: Callable[[], Any]) -> None:
        read, write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            self.pid = os.fork()
        except OSError:
            os.close(read)
            os.close(write)
            raise
        if self.pid == 0:  # the child
            os.close(read)
            _call_and_exit(write, work)
        os.close(write)
        self._read = read
        self._done = False
        self._result: Any = None

    def result(self) -> Any:
        """The child's value, or None when it failed (the caller then does the work itself)."""
        if self._done:
            return self._result
        chunks = []
        try:
            while True:
                chunk = os.read(self._read, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            self._done = True
            os.close(self._read)
        try:
            status, payload = pickle.loads(b"".join(chunks))
        except Exception:  # the child died before it wrote (killed, out of memory)
            return None
        self._result = payload if status == "ok" else None
        return self._result

    def close(self) -> None:
        """End the child (at once, if it is still working) and reap it."""
        if self.pid == 0:
            return
        pid, self.pid = self.pid, 0
        if not self._done:
            self._done = True
            os.close(self._read)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _call_and_exit(write: int, work: Callable[[], Any]) -> None:
    """The child's whole life: work, write the result, end without running the parent's exit
    handlers or flushing its copies of the parent's buffers."""
    result: tuple[str, Any] = ("failed", None)
    # Ctrl-C is the parent's to handle (it ends this child with ``close``): the parent's signal
    # wake-up socket, inherited, must not hear this process's SIGINT as a second one.
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = ("ok", work())
    except BaseException as exc:  # the parent does the work again, and reports it as it always did
        log.debug("work in a forked child failed: %r", exc)
    try:
        data = pickle.dumps(result)
    except Exception:
        data = pickle.dumps(("failed", None))
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(write, view) :]
    except OSError:
        pass  # the parent stopped listening
    finally:
        os._exit(0)
