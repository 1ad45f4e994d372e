"""Issue 30, item C: an index on a read-only filesystem answers ``query`` and ``status`` (Chroma
cannot open a database it may not write, so they read a temporary copy, and say so), and every
write refuses in one paragraph. The filesystem is a real read-only bind mount; a read-only lock
file, which root can always write, is injected (``fault_``)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.helpers import assert_one_paragraph_error, cli, small_config, write_docs
from tests.adversarial.mounts import read_only_view

QUESTION = "How often is the silica gel desiccant replaced?"


def _files(folder: Path) -> set[str]:
    # Without SQLite's -wal and -shm files, which come and go with the connections of earlier
    # tests in this process.
    return {name for name in os.listdir(folder) if not name.endswith(("-wal", "-shm"))}


def _config_at(tmp_path: Path, docs: Path, persist_dir: Path) -> Path:
    return small_config(tmp_path / "ro-cfg", docs, vector_store={"persist_dir": str(persist_dir)})


def test_a_read_only_index_answers_queries_and_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs)
    assert cli("build", str(config)).returncode == 0
    storage = tmp_path / "cfg" / "storage"
    before = cli("query", str(config), QUESTION, "--json").json()["sources"]
    left_before = _files(storage)

    with read_only_view(storage, tmp_path / "ro") as ro:
        ro_config = _config_at(tmp_path, docs, ro)
        status = cli("status", str(ro_config), "--json")
        assert status.returncode == 0, status.stderr
        assert status.json()["documents"] == 3 and status.json()["up_to_date"], status.stdout
        # The notice (a warning on stderr from the CLI; pytest's handler holds it here).
        assert "read-only" in caplog.text and "temporary copy" in caplog.text, caplog.text
        assert cli("status", str(ro_config)).returncode == 0

        for mode in ("vector", "hybrid", "bm25"):
            result = cli("query", str(ro_config), QUESTION, "--mode", mode, "--json")
            assert result.returncode == 0, (mode, result.stderr)
            assert "Traceback" not in result.stderr
            sources = result.json()["sources"]
            assert sources and sources[0]["text"] == before[0]["text"], (mode, sources)
            if mode == "vector":
                assert [s["chunk_id"] for s in sources] == [s["chunk_id"] for s in before]

        # Every write refuses in one paragraph, without a --rebuild hint it could not follow;
        # a dry run writes nothing and answers.
        (docs / "new.txt").write_text("A new note about the anemometer calibration.\n")
        dry = cli("build", str(ro_config), "--dry-run", "--json")
        assert dry.returncode == 0 and dry.json()["added"] == 1, dry.stderr
        for args in (("build",), ("build", "--rebuild")):
            result = cli(args[0], str(ro_config), *args[1:])
            assert_one_paragraph_error(result, "Read-only file system", "intact")
        # The refusal left the index answering.
        assert cli("query", str(ro_config), QUESTION, "--mode", "vector").returncode == 0

    assert _files(storage) == left_before  # nothing written into the folder
    # Writable again: the build goes on from the same committed index.
    summary = cli("build", str(config), "--json").json()
    assert summary["added"] == 1 and summary["unchanged"] == 3


@pytest.fixture
def fault_read_only_lock_file(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Opening the listed lock files for writing fails with EACCES, as for a user whose lock file
    is read-only (touch() still succeeds: it only sets the file's times)."""
    files: list[Path] = []
    real_open = os.open

    def open_denied(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        writing = flags & (os.O_WRONLY | os.O_RDWR)
        if writing and Path(os.fsdecode(path)).resolve() in files:
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_denied)
    return files


def test_a_read_only_lock_file_refuses_in_one_paragraph(
    tmp_path: Path, fault_read_only_lock_file: list[Path]
) -> None:
    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs)
    assert cli("build", str(config)).returncode == 0
    lock = tmp_path / "cfg" / "storage" / "indexer-build.lock"
    assert lock.exists()
    fault_read_only_lock_file.append(lock.resolve())
    result = cli("build", str(config))
    assert_one_paragraph_error(result, "writer lock", "Permission denied")
    assert "another build" not in result.stderr
    assert cli("query", str(config), QUESTION, "--mode", "vector").returncode == 0


def test_a_read_only_copy_of_an_index_elsewhere_answers(tmp_path: Path) -> None:
    """The copy an index is read from is the folder's own state: a second index beside it is not
    mixed in, and the copy is gone once the process drops it."""
    from indexer.config import load_config
    from indexer.index.index import Index

    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs)
    assert cli("build", str(config)).returncode == 0
    storage = tmp_path / "cfg" / "storage"
    with read_only_view(storage, tmp_path / "ro") as ro:
        ro_config = _config_at(tmp_path, docs, ro)
        index = Index(load_config(ro_config).vector_store)
        store = index.chunk_store(create=False)
        assert store is not None and store.count() == 3
        snapshot = index.snapshot
        assert snapshot is not None and snapshot.is_dir() and not snapshot.is_relative_to(ro)
        index._reopen()
        assert not snapshot.exists()
    shutil.rmtree(tmp_path / "ro", ignore_errors=True)
