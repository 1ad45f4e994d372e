"""Failures to write an index, as one paragraph a user can act on.

A full disk shows up as ``OSError(ENOSPC)`` from our own files and as a chromadb ``InternalError``
("database or disk is full") from Chroma's SQLite; a read-only folder as ``EROFS``/``EACCES``. Each
becomes a ``StoreError`` that says so and that the committed index is intact: every write of a
build happens before the manifest names it (``index/manifest.py``), so a failed write leaves the
last committed index answering queries.
"""

from __future__ import annotations

import errno
from pathlib import Path

from indexer.errors import StoreError

_DISK_FULL_TEXTS = ("disk is full", "no space left", "disk full", "quota exceeded")
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_INTACT = "The index as last committed is intact and still answers queries."


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _DISK_FULL_TEXTS)


def write_error(exc: BaseException, what: str, where: Path | str) -> StoreError:
    """``exc``, raised while trying to ``what`` in the index at ``where``, as a ``StoreError``."""
    if is_disk_full(exc):
        return StoreError(
            f"the disk is full: cannot {what} in {where}. Free some space (or point "
            f"vector_store.persist_dir at a disk with room), then run the build again. {_INTACT}"
        )
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return StoreError(
            f"cannot {what}: vector_store.persist_dir {where} (or a folder above it) is a file, not a "
            "folder. Point persist_dir at a folder, or move the file away."
        )
    if isinstance(exc, OSError) and exc.errno in _READ_ONLY:
        return StoreError(
            f"cannot {what} in {where}: {exc.strerror or exc} (a read-only disk or folder?). Make "
            f"vector_store.persist_dir writable, or point it at a folder this user may write. {_INTACT}"
        )
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return StoreError(f"cannot {what} in {where}: {type(exc).__name__}: {detail}")
