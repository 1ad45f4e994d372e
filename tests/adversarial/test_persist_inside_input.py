"""Issue 10, item 6: an index inside its own documents folder is refused with a clear message,
before anything is read or written."""

from __future__ import annotations

from pathlib import Path

from tests.adversarial.helpers import assert_one_paragraph_error, cli, small_config, write_docs


def test_persist_dir_inside_input_dir_is_refused(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path, docs, vector_store={"persist_dir": str(docs / "index")})
    for command in ("build", "status", "config"):
        assert_one_paragraph_error(
            cli(command, str(config)), "vector_store.persist_dir", "inside data.input_dir"
        )
    assert not (docs / "index").exists()

    # The same folder reached through a symlink is the same folder.
    (tmp_path / "alias").symlink_to(docs)
    config = small_config(tmp_path, docs, vector_store={"persist_dir": str(tmp_path / "alias" / "ix")})
    assert_one_paragraph_error(cli("build", str(config)), "inside data.input_dir")
