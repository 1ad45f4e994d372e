"""Find the documents of a folder and fingerprint them.

A document's id is its path relative to ``data.input_dir`` (stable across machines and runs); its
hash covers its bytes and the settings that shape its chunks, never file times.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.config.models import DataConfig
from indexer.errors import DataError
from indexer.ingestion.readers import is_supported

# Bump when reading or splitting changes what chunks a file produces, so builds redo them.
PIPELINE_VERSION = "1"


@dataclass(frozen=True)
class SourceFile:
    path: Path
    doc_id: str
    size: int


@dataclass(frozen=True)
class Refused:
    """A selected file that is never read: it leads outside the folder, is too large, or cannot be
    opened. Skipped and listed with its reason, like an unreadable file."""

    doc_id: str
    reason: str


@dataclass(frozen=True)
class Discovery:
    sources: list[SourceFile]
    """Files of a type indexer reads, sorted by id."""
    unsupported: list[SourceFile]
    """Files that are selected but of a type no reader handles: skipped and listed."""
    refused: list[Refused] = field(default_factory=list)
    """Files that are selected but must not or cannot be read: skipped and listed."""


def discover(config: DataConfig) -> Discovery:
    """Every file to index, sorted by id; a clear error if there is nothing to index."""
    root = config.input_dir
    if not root.exists():
        raise DataError(f"data.input_dir {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data.input_dir {root} is not a folder")
    exts = set(config.required_exts) if config.required_exts is not None else None
    # The folder's real location: every file must resolve inside it. (The walk does not descend
    # into linked folders, but a linked *file* would otherwise be read wherever it points.)
    real_root = root.resolve()
    found: list[SourceFile] = []
    unsupported: list[SourceFile] = []
    refused: list[Refused] = []
    for rel, entry in _walk(root, config.recursive):
        path = root / rel
        if exts is not None and path.suffix.lower() not in exts:
            continue
        if any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(entry.name, pat) for pat in config.exclude):
            continue
        try:
            info: os.stat_result | None = entry.stat(follow_symlinks=False)
        except OSError:
            info = None  # gone since the listing: refused below, with the reason
        problem = _refusal(path, info, real_root, config)
        if problem is not None:
            refused.append(Refused(rel, problem))
            continue
        try:
            size = path.stat().st_size if info is None or stat.S_ISLNK(info.st_mode) else info.st_size
        except OSError as exc:
            refused.append(Refused(rel, f"cannot read ({exc.strerror or exc})"))
            continue
        if size > config.max_file_bytes:
            refused.append(
                Refused(rel, f"{size} bytes, larger than data.max_file_bytes ({config.max_file_bytes})")
            )
            continue
        source = SourceFile(path=path, doc_id=rel, size=size)
        (found if is_supported(path) else unsupported).append(source)
    if not found:
        where = "or its sub-folders " if config.recursive else ""
        what = f"with extensions {', '.join(sorted(exts))}" if exts is not None else "of a supported type"
        others = f"; unsupported: {', '.join(s.doc_id for s in unsupported[:5])}" if unsupported else ""
        others += "".join(f"; skipped {r.doc_id}: {r.reason}" for r in refused[:5])
        raise DataError(
            f"no documents to index: data.input_dir {root} {where}has no files {what}"
            + (f" (after exclude {config.exclude})" if config.exclude else "")
            + others
        )
    return Discovery(
        sorted(found, key=lambda f: f.doc_id),
        sorted(unsupported, key=lambda f: f.doc_id),
        sorted(refused, key=lambda r: r.doc_id),
    )


def _walk(root: Path, recursive: bool) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry of the folder that is not itself a folder, with its path relative to it, like
    ``Path.glob("**/*")`` (no linked folder is entered) but from ``os.scandir``, which knows an
    entry's type without a system call: an unchanged re-run lists thousands of files. Hidden files
    and folders (.git, .DS_Store) are never documents."""
    pending = [("", os.fspath(root))]
    while pending:
        prefix, folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except PermissionError as exc:
            if not prefix:
                raise DataError(f"cannot read data.input_dir {root}: {exc.strerror or exc}") from None
            continue  # an unreadable sub-folder is passed over, as Path.glob does
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():  # follows a link: a linked folder is neither a file nor entered
                if recursive and not entry.is_symlink():
                    pending.append((f"{prefix}{entry.name}/", entry.path))
                continue
            yield prefix + entry.name, entry


def _refusal(path: Path, info: os.stat_result | None, real_root: Path, config: DataConfig) -> str | None:
    """Why ``path`` must not be read, or ``None``. A link is judged by where it finally leads."""
    if info is not None and not stat.S_ISLNK(info.st_mode):
        # Not a link, and the walk enters no linked folder: the file lies inside the
        # folder, with no need to resolve its path (a system call per part of it, per file).
        return None if stat.S_ISREG(info.st_mode) else "not a regular file"
    if info is not None and not config.follow_symlinks:
        return "symbolic link (not followed: data.follow_symlinks is off)"
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # a dangling link, a link loop
        return f"cannot read (broken symbolic link: {getattr(exc, 'strerror', None) or exc})"
    if not target.is_relative_to(real_root):
        return "symbolic link to a file outside data.input_dir (never followed)"
    if not target.is_file():
        return "not a regular file"
    return None


def settings_digest(settings: dict[str, Any]) -> str:
    """A short stable hash of the settings that shape every chunk (chunking, prefixes, ...)."""
    blob = json.dumps({"pipeline": PIPELINE_VERSION, **settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_hash(path: Path, settings_key: str) -> str:
    digest = hashlib.sha256(settings_key.encode())
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


def content_hash(data: bytes, settings_key: str) -> str:
    """``file_hash`` of a file whose bytes are ``data``."""
    digest = hashlib.sha256(settings_key.encode())
    digest.update(data)
    return digest.hexdigest()[:32]
