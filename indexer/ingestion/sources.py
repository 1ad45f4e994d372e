"""Find the documents of a folder and fingerprint them.

A document's id is its path relative to ``data.input_dir`` (stable across machines and runs); its
hash covers its bytes and the settings that shape its chunks, never file times. A name that is not
valid UTF-8 gets an escaped id (``name_to_id``), which ``id_to_name`` turns back into its bytes.

A folder or file that cannot be read (permission denied, an I/O error) is listed as unreadable, not
as gone: the plan keeps what the index holds for it (``plan.plan_sync``), so a transient ``chmod``
never deletes a subtree from the index.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.config.models import DataConfig
from indexer.errors import DataError
from indexer.ingestion.readers import is_supported

# Bump when reading or splitting changes what chunks a file produces, so builds redo them.
PIPELINE_VERSION = "2"


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
    unreadable: list[Refused] = field(default_factory=list)
    """Folders (their id ends in ``/``) that cannot be listed, and files that cannot be examined,
    though they may still exist: what the index holds for them is kept."""


def name_to_id(name: str) -> str:
    """A file name as it appears in a document id: itself, unless it holds bytes that are not UTF-8
    (``os.scandir`` hands those over as lone surrogates, which no JSON, manifest or Chroma metadata
    can store). Such bytes become ``\\xHH`` and a backslash becomes ``\\\\``, so the id is valid
    UTF-8 and maps back to exactly one name (``id_to_name``)."""
    if "\\" not in name and not _SURROGATE.search(name):
        return name
    raw = os.fsencode(name).replace(b"\\", b"\\\\")
    return raw.decode("utf-8", errors="backslashreplace")


def id_to_name(doc_id: str) -> str:
    """The file name (or relative path) a document id stands for: ``name_to_id`` undone."""
    if "\\" not in doc_id:
        return doc_id
    raw = _ESCAPE.sub(lambda m: bytes([int(m[1], 16)]) if m[1] else b"\\", doc_id.encode("utf-8"))
    return os.fsdecode(raw)


_SURROGATE = re.compile(r"[\udc80-\udcff]")
_ESCAPE = re.compile(rb"\\(?:x([0-9a-f]{2})|\\)")


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
    unreadable: list[Refused] = []
    for rel, entry in _walk(root, config.recursive, unreadable):
        path = Path(entry.path)
        if exts is not None and path.suffix.lower() not in exts:
            continue
        names = (rel, rel.rsplit("/", 1)[-1], entry.name)  # entry.name: the raw name, if escaped
        if any(fnmatch.fnmatch(name, pat) for pat in config.exclude for name in names):
            continue
        try:
            info: os.stat_result | None = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            info = None  # gone since the listing: refused below, with the reason
        except OSError as exc:  # e.g. a folder that may be listed but not searched (mode r--)
            unreadable.append(Refused(rel, f"cannot read ({exc.strerror or exc})"))
            continue
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
        (found if is_supported(path, config.readers) else unsupported).append(source)
    if not found and not unreadable:  # an unreadable folder may hold what the index keeps
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
        sorted(unreadable, key=lambda r: r.doc_id),
    )


def _walk(root: Path, recursive: bool, unreadable: list[Refused]) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry of the folder that is not itself a folder, with its id (its path relative to the
    folder, see ``name_to_id``), like ``Path.glob("**/*")`` (no linked folder is entered) but from
    ``os.scandir``, which knows an entry's type without a system call: an unchanged re-run lists
    thousands of files. Hidden files and folders (.git, .DS_Store) are never documents. A
    sub-folder that cannot be listed is added to ``unreadable`` (as ``its/id/``)."""
    pending = [("", os.fspath(root))]
    while pending:
        prefix, folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except (FileNotFoundError, NotADirectoryError):
            if not prefix:
                raise DataError(f"data.input_dir {root} is gone") from None
            continue  # removed since its parent was listed: its files are gone
        except OSError as exc:
            if not prefix:
                raise DataError(f"cannot read data.input_dir {root}: {exc.strerror or exc}") from None
            # Not "gone": its files may all be there, so what the index holds for them is kept.
            unreadable.append(Refused(prefix, f"cannot list the folder ({exc.strerror or exc})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + name_to_id(entry.name)
            try:
                # Follows a link: a linked folder is neither a file nor entered.
                is_dir = entry.is_dir()
            except OSError:  # a link loop (ELOOP): taken for a file, and refused as a loop
                is_dir = False
            if is_dir:
                if recursive and not entry.is_symlink():
                    pending.append((f"{rel}/", entry.path))
                continue
            yield rel, entry


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
    except RuntimeError:  # a link loop, before Python 3.13
        return "symbolic link loop (never followed)"
    except OSError as exc:  # a dangling link, a link loop (ELOOP)
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (never followed)"
        return f"cannot read (broken symbolic link: {exc.strerror or exc})"
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


def served_path(config: DataConfig, doc_id: str) -> Path | None:
    """The file a document id names, when ``discover`` would list it now: inside the folder by the
    same rules (no ``..``, no absolute path, no hidden part, no linked folder on the way, a link only
    where ``data.follow_symlinks`` allows it and only to a file inside the folder, not excluded, not
    over ``data.max_file_bytes``), resolved; ``None`` otherwise. Nothing is read."""
    name = id_to_name(doc_id)
    parts = name.split("/")
    if not name or "\x00" in name or name.startswith("/"):
        return None
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    if len(parts) > 1 and not config.recursive:
        return None
    if config.required_exts is not None and Path(name).suffix.lower() not in set(config.required_exts):
        return None
    names = (doc_id, parts[-1])
    if any(fnmatch.fnmatch(n, pat) for pat in config.exclude for n in names):
        return None
    root = config.input_dir
    try:
        real_root = root.resolve(strict=True)
        folder = root
        for part in parts[:-1]:  # the walk enters no linked folder
            folder = folder / part
            if not stat.S_ISDIR(folder.lstat().st_mode):
                return None
        path = folder / parts[-1]
        info = path.lstat()
    except OSError:
        return None
    if _refusal(path, info, real_root, config) is not None:
        return None
    try:
        target = path.resolve(strict=True)
        if not target.is_relative_to(real_root) or target.stat().st_size > config.max_file_bytes:
            return None
    except OSError:
        return None
    return target
