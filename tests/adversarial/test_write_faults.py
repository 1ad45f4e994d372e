"""Issue 10, item 9: an index folder that is a file or read-only, and a disk that fills up during a
build, each give one paragraph and exit 2; the committed index stays intact and answers.

Two conditions cannot be made for real in a test (root writes to read-only modes; filling a disk
would fill the CI machine's), so they are injected by fixtures named ``fault_*``.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.helpers import assert_one_paragraph_error, cli, small_config, write_docs

QUESTION = "How often is the silica gel desiccant replaced?"


def test_persist_dir_that_is_a_file(tmp_path: Path) -> None:
    storage = tmp_path / "cfg" / "storage"
    storage.parent.mkdir()
    storage.write_text("not a folder")
    config = small_config(tmp_path / "cfg", write_docs(tmp_path / "docs"))
    for args in (("build",), ("build", "--rebuild"), ("status",), ("query", QUESTION)):
        result = cli(args[0], str(config), *args[1:])
        assert_one_paragraph_error(result, str(storage))
        assert "is a file" in result.stderr or "Not a directory" in result.stderr, result.stderr
    assert storage.read_text() == "not a folder"  # not ours to remove


@pytest.fixture
def fault_read_only_folder(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Creating or writing a file under the listed folders fails with EROFS."""
    folders: list[Path] = []
    real_open = os.open

    def open_read_only(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if writing and any(Path(os.fsdecode(path)).resolve().is_relative_to(f) for f in folders):
            raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_read_only)
    return folders


def test_read_only_persist_dir(tmp_path: Path, fault_read_only_folder: list[Path]) -> None:
    config = small_config(tmp_path / "cfg", write_docs(tmp_path / "docs"))
    storage = tmp_path / "cfg" / "storage"
    storage.mkdir()
    fault_read_only_folder.append(storage.resolve())
    assert_one_paragraph_error(cli("build", str(config)), "Read-only file system", "writable")


class DiskFull:
    """``arm("chroma")``: Chroma's SQLite reports a full disk on a write, as chromadb raises it;
    ``arm("query")``: Chroma cannot apply its pending writes before a search;
    ``arm("manifest")``: our own file write gets ENOSPC. ``disarm()``: space again."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch

    def arm(self, where: str) -> None:
        if where == "query":
            from chromadb.api.models.Collection import Collection
            from chromadb.errors import InternalError

            def query(self: Any, *args: Any, **kwargs: Any) -> None:
                raise InternalError("Failed to apply logs: database or disk is full")

            self._monkeypatch.setattr(Collection, "query", query)
        elif where == "chroma":
            from chromadb.api.models.Collection import Collection
            from chromadb.errors import InternalError

            def upsert(self: Any, *args: Any, **kwargs: Any) -> None:
                raise InternalError(
                    "Query error: Database error: error returned from database: (code: 13) "
                    "database or disk is full"
                )

            self._monkeypatch.setattr(Collection, "upsert", upsert)
        else:
            import indexer.index.manifest as manifest_module

            def mkstemp(*args: Any, **kwargs: Any) -> Any:
                raise OSError(errno.ENOSPC, "No space left on device")

            self._monkeypatch.setattr(manifest_module.tempfile, "mkstemp", mkstemp)

    def disarm(self) -> None:
        self._monkeypatch.undo()


@pytest.fixture
def fault_disk_full(monkeypatch: pytest.MonkeyPatch) -> DiskFull:
    return DiskFull(monkeypatch)


@pytest.mark.parametrize("where", ["chroma", "manifest"])
def test_a_full_disk_during_a_build_keeps_the_committed_index(
    tmp_path: Path, fault_disk_full: DiskFull, where: str
) -> None:
    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs)
    assert cli("build", str(config)).returncode == 0
    before = cli("query", str(config), QUESTION, "--json").json()["sources"]
    manifest_path = tmp_path / "cfg" / "storage" / "indexer-manifest.json"
    committed = json.loads(manifest_path.read_text())["files"]

    (docs / "mast.txt").write_text("The desiccant is now replaced every three months.\n")
    (docs / "new.txt").write_text("A new note about the anemometer calibration.\n")
    fault_disk_full.arm(where)
    assert_one_paragraph_error(cli("build", str(config)), "disk is full", "intact")
    fault_disk_full.disarm()
    assert json.loads(manifest_path.read_text())["files"] == committed

    # The last committed index still answers, exactly as before.
    after = cli("query", str(config), QUESTION, "--json").json()["sources"]
    assert [(s["chunk_id"], s["text"]) for s in after] == [(s["chunk_id"], s["text"]) for s in before]
    # Space again: the next build completes the change.
    summary = cli("build", str(config), "--json").json()
    assert summary["documents"] == 4 and summary["updated"] == 1 and summary["added"] == 1


def test_a_query_while_the_disk_is_full_says_so(tmp_path: Path, fault_disk_full: DiskFull) -> None:
    config = small_config(tmp_path / "cfg", write_docs(tmp_path / "docs"))
    assert cli("build", str(config)).returncode == 0
    fault_disk_full.arm("query")
    for mode in ("vector", "hybrid"):
        result = cli("query", str(config), QUESTION, "--mode", mode)
        assert_one_paragraph_error(result, "the disk is full")
    # Keyword search does not go through Chroma's search: it still answers.
    assert cli("query", str(config), QUESTION, "--mode", "bm25").returncode == 0
