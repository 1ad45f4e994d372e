"""Issue 10, item 1: a symlinked file must not bring a file from outside ``input_dir`` in."""

from __future__ import annotations

from pathlib import Path

from tests.adversarial.helpers import cli, small_config, write_docs

SECRET = "root:x:0:0:root:/root:/bin/bash zanzibar-secret-line\n"


def test_a_symlink_out_of_the_folder_is_skipped_and_listed_even_when_links_are_followed(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text(SECRET)
    docs = write_docs(tmp_path / "docs")
    (docs / "passwd.txt").symlink_to(outside / "passwd")  # escapes the folder
    (docs / "alias.txt").symlink_to(docs / "mast.txt")  # stays inside it

    # Default: no link is followed; both are listed with their reason.
    config = small_config(tmp_path / "a", docs)
    summary = cli("build", str(config), "--json").json()
    skipped = {s["file"]: s["reason"] for s in summary["skipped"]}
    assert "symbolic link" in skipped["passwd.txt"]
    assert "symbolic link" in skipped["alias.txt"]
    assert summary["documents"] == 3

    # Opt-in: links inside the folder are followed, the one leading out still is not.
    config = small_config(tmp_path / "b", docs, data={"input_dir": str(docs), "follow_symlinks": True})
    summary = cli("build", str(config), "--json").json()
    skipped = {s["file"]: s["reason"] for s in summary["skipped"]}
    assert "outside data.input_dir" in skipped["passwd.txt"]
    assert "alias.txt" not in skipped and summary["documents"] == 4

    sources = cli("query", str(config), "root nologin bin bash zanzibar", "--json").json()["sources"]
    assert sources and all("zanzibar" not in s["text"] for s in sources)
    assert all(s["file"] != "passwd.txt" for s in sources)
    # status and --dry-run list it too, and read nothing outside.
    status = cli("status", str(config), "--json").json()
    assert "outside data.input_dir" in status["skipped"]["passwd.txt"]
    assert status["up_to_date"]
