"""Issue 10, item 11: ``status`` on an index whose Chroma database was deleted reports it, and
creates nothing."""

from __future__ import annotations

from pathlib import Path

from chromadb.api.shared_system_client import SharedSystemClient

from tests.adversarial.helpers import cli, small_config, write_docs


def test_status_reports_a_deleted_database_and_creates_nothing(tmp_path: Path) -> None:
    config = small_config(tmp_path / "cfg", write_docs(tmp_path / "docs"))
    storage = tmp_path / "cfg" / "storage"
    assert cli("build", str(config)).returncode == 0
    (storage / "chroma.sqlite3").unlink()
    # This process's Chroma keeps its connection to the deleted file; a user's next command is a
    # new process, which is what forgetting the cached client gives here.
    SharedSystemClient.clear_system_cache()
    before = sorted(p.relative_to(storage) for p in storage.rglob("*"))

    report = cli("status", str(config), "--json")
    assert report.returncode == 0, report.stderr
    assert report.json()["store_missing"] and not report.json()["up_to_date"]
    text = cli("status", str(config))
    assert "MISSING" in text.stdout and "chroma.sqlite3" in text.stdout
    assert "Up to date" not in text.stdout
    assert sorted(p.relative_to(storage) for p in storage.rglob("*")) == before
    assert not (storage / "chroma.sqlite3").exists()

    # The next build puts every file back.
    summary = cli("build", str(config), "--json").json()
    assert summary["documents"] == 3 and summary["chunks_embedded"] > 0
    assert cli("status", str(config), "--json").json()["up_to_date"]
