"""Failures to write an index, as one paragraph a user can act on.

A full disk shows up as ``OSError(ENOSPC)`` from our own files and as a chromadb ``InternalError``
("database or disk is full") from Chroma's SQLite, but also as errors that never say so ("Error in
compaction: Failed to apply logs to the hnsw segment writer", when Chroma's vector segment cannot
grow): any write error in a folder whose disk has almost no room left is told as a full disk. A
read-only folder shows up as ``EROFS``/``EACCES``. Each
becomes a ``StoreError`` that says so and that the committed index is intact: every write of a
build happens before the manifest names it (``index/manifest.py``), so a failed write leaves the
last committed index answering queries.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from indexer.errors import StoreError

_DISK_FULL_TEXTS = ("disk is full", "no space left", "disk full", "quota exceeded")
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_INTACT = "The index as last committed is intact and still answers queries."


# Free bytes under which a write error in a folder is taken for a full disk: Chroma's own errors
# do not always say so, and a write that failed for want of room leaves about this much or less.
NEARLY_FULL_BYTES = 1024 * 1024


def is_disk_full(exc: BaseException, folder: Path | None = None) -> bool:
    """``exc`` says the disk is full, or ``folder``'s disk has almost no room left (see above)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    if any(marker in text for marker in _DISK_FULL_TEXTS):
        return True
    return folder is not None and free_bytes(folder) < NEARLY_FULL_BYTES


def free_bytes(folder: Path) -> int:
    """Bytes this user may still write on ``folder``'s disk (a huge number when it cannot be told)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 1 << 62


def is_read_only(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _READ_ONLY


def disk_full_error(what: str, where: Path | str, detail: str = "") -> StoreError:
    return StoreError(
        f"the disk is full: cannot {what} in {where}{detail}. Free some space (or point "
        f"vector_store.persist_dir at a disk with room), then run the build again. {_INTACT}"
    )


def read_only_error(what: str, where: Path | str, detail: str) -> StoreError:
    return StoreError(
        f"cannot {what} in {where}: {detail} (a read-only disk or folder?). Make "
        f"vector_store.persist_dir writable, or point it at a folder this user may write. {_INTACT}"
    )


def write_error(
    exc: BaseException, what: str, where: Path | str, *, folder: Path | None = None
) -> StoreError:
    """``exc``, raised while trying to ``what`` in the index at ``where``, as a ``StoreError``;
    ``folder``, when given, is the index folder whose free space tells a full disk."""
    if is_disk_full(exc, folder):
        return disk_full_error(what, where)
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return StoreError(
            f"cannot {what}: vector_store.persist_dir {where} (or a folder above it) is a file, not a "
            "folder. Point persist_dir at a folder, or move the file away."
        )
    if isinstance(exc, OSError) and exc.errno in _READ_ONLY:
        return read_only_error(what, where, str(exc.strerror or exc))
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return StoreError(f"cannot {what} in {where}: {type(exc).__name__}: {detail}")
