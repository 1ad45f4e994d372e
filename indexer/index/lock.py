"""One writer per index: an exclusive lock held for the whole of a build.

On an embedded index the lock is an OS file lock (``filelock``: ``flock`` on POSIX) on a file in
the persist folder. The kernel releases it when the holder exits in any way, SIGKILL and crashes
included, so a lock of a dead process never blocks the next build. Who holds it (pid, host, start)
is written to a second file, because ``filelock`` truncates the lock file when it tries to take it.

A Chroma server offers no atomic create-if-absent, so builds against a server take no lock; the
README says to run one build at a time per server collection.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from indexer.errors import StoreError

LOCK_FILE = "indexer-build.lock"
OWNER_FILE = "indexer-build.owner.json"


class IndexBusyError(StoreError):
    """Another build is writing to the same index."""


@contextmanager
def writer_lock(folder: Path | None) -> Iterator[None]:
    """Hold the index's writer lock, or fail at once naming the build that holds it.

    ``folder`` is the persist folder of an embedded index; ``None`` (a Chroma server) takes none.
    """
    if folder is None:
        yield
        return
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_FILE, timeout=0, thread_local=False, is_singleton=False)
    try:
        lock.acquire()
    except Timeout:
        raise IndexBusyError(
            f"another build is writing to the index in {folder} ({_describe_owner(folder)}): only one "
            "build may write at a time. Wait for it to finish, or stop it; a build that died releases "
            "the lock by itself."
        ) from None
    owner = folder / OWNER_FILE
    try:
        owner.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
        )
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def _describe_owner(folder: Path) -> str:
    try:
        info = json.loads((folder / OWNER_FILE).read_text())
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError):
        return "owner unknown"
