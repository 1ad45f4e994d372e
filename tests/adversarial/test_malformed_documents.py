"""Issue 30, items 3 and 11: whatever a reader raises on one malformed file skips that file with a
one-line reason, and the rest of the folder is built; only ``--strict`` makes it fatal. A file
skipped by one build and readable at the next is reported as added, in the count and the list.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.ingestion.readers import read_file
from tests.adversarial.helpers import assert_one_paragraph_error, cli, small_config, write_docs

BOGUS_CHARSET_EML = (
    b"From: logger@example.org\r\n"
    b"To: crew@example.org\r\n"
    b"Subject: Mast report\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=bogus-charset\r\n"
    b"\r\n"
    b"The rain gauge on the north mast was emptied on Tuesday.\r\n"
)
GOOD_EML = BOGUS_CHARSET_EML.replace(b"bogus-charset", b"utf-8")
DEPTH = 100_000
DEEP_JSON = "[" * DEPTH + "]" * DEPTH


def _malformed(docs: Path) -> None:
    (docs / "report.eml").write_bytes(BOGUS_CHARSET_EML)
    (docs / "deep.json").write_text(DEEP_JSON)


def test_a_reader_error_skips_the_file_with_a_one_line_reason(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    _malformed(docs)
    config = small_config(tmp_path / "cfg", docs)

    built = cli("build", str(config), "--json")
    assert built.returncode == 0, built.stderr
    summary = built.json()
    assert summary["documents"] == 3 and summary["added"] == 3
    reasons = {s["file"]: s["reason"] for s in summary["skipped"]}
    assert set(reasons) == {"report.eml", "deep.json"}
    assert reasons["report.eml"].startswith("cannot be read (LookupError: ")
    assert "bogus-charset" in reasons["report.eml"]
    assert reasons["deep.json"].startswith("cannot be read (RecursionError: ")
    assert all("\n" not in reason and len(reason) < 250 for reason in reasons.values())
    assert "Traceback" not in built.stderr

    status = cli("status", str(config), "--json").json()
    assert status["up_to_date"] and status["skipped"] == reasons
    hit = cli("query", str(config), "desiccant pack", "--retrieve-only", "--json").json()
    assert hit["sources"][0]["file"] == "mast.txt"


@pytest.mark.parametrize("name", ["report.eml", "deep.json"])
def test_strict_makes_a_reader_error_fatal(tmp_path: Path, name: str) -> None:
    docs = write_docs(tmp_path / "docs")
    _malformed(docs)
    (docs / ("deep.json" if name == "report.eml" else "report.eml")).unlink()
    config = small_config(tmp_path / "cfg", docs)

    result = cli("build", str(config), "--strict")
    assert_one_paragraph_error(result, "--strict", name, "cannot be read")

    # Skipped by a build without --strict, and unchanged: --strict still refuses it, and the index
    # as built still answers.
    assert cli("build", str(config)).returncode == 0
    again = cli("build", str(config), "--strict")
    assert_one_paragraph_error(again, "--strict", name, "cannot be read", "unchanged since")
    hit = cli("query", str(config), "desiccant pack", "--retrieve-only", "--json").json()
    assert hit["sources"][0]["file"] == "mast.txt"


def test_a_ray_actor_skips_a_malformed_file_alike(tmp_path: Path) -> None:
    # The actor's own code, run in this process (no cluster): the same guard as a local build's.
    from indexer.config.loader import load_config
    from indexer.ingestion.prepare import WorkItem
    from indexer.ingestion.ray_engine import EmbeddingWorker

    docs = write_docs(tmp_path / "docs")
    _malformed(docs)
    worker = EmbeddingWorker(load_config(small_config(tmp_path / "cfg", docs)))
    assert worker.error is None
    names = ("report.eml", "deep.json", "mast.txt")
    items = [WorkItem(name, str(docs / name), "planned", 0) for name in names]
    report, deep, mast = worker.prepare(items)
    assert report.error is not None and report.error.startswith("cannot be read (LookupError: ")
    assert deep.error is not None and deep.error.startswith("cannot be read (RecursionError: ")
    assert mast.error is None and mast.vectors.shape == (1, 384)


def test_a_file_readable_again_is_listed_as_added(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    _malformed(docs)
    config = small_config(tmp_path / "cfg", docs)
    first = cli("build", str(config), "--json").json()
    assert {s["file"] for s in first["skipped"]} == {"report.eml", "deep.json"}

    (docs / "report.eml").write_bytes(GOOD_EML)
    (docs / "deep.json").write_text('{"gauge": "emptied"}')
    assert [d.text.strip() for d in read_file(docs / "report.eml")] == [
        "The rain gauge on the north mast was emptied on Tuesday."
    ]
    dry = cli("build", str(config), "--dry-run", "--json").json()
    assert dry["added"] == 2 and dry["changes"]["added"] == ["deep.json", "report.eml"]

    built = cli("build", str(config), "--json").json()
    assert built["added"] == 2 and built["skipped"] == []
    assert built["changes"] == {"added": ["deep.json", "report.eml"], "updated": [], "deleted": []}

    # A file planned for indexing that turns out unreadable is skipped, not listed as added.
    (docs / "late.json").write_text("{not json")
    again = cli("build", str(config), "--json").json()
    assert again["added"] == 0 and again["changes"]["added"] == []
    assert [s["file"] for s in again["skipped"]] == ["late.json"]
