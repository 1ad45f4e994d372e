"""Issue 10, item 13: a key written twice in a config is an error naming the file and the line,
not a silent choice of the second."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.config import load_config
from indexer.errors import ConfigError
from tests.adversarial.helpers import assert_one_paragraph_error, cli

CONFIG = """\
data: {input_dir: docs}
vector_store: {persist_dir: storage}
chunking:
  chunk_size: 128
query: {top_k: 3}
chunking:
  chunk_size: 512
"""


def test_a_duplicate_key_names_the_file_and_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message and "line 6" in message and "duplicate key 'chunking'" in message
    assert "first at line 3" in message
    assert_one_paragraph_error(cli("config", str(path)), "duplicate key 'chunking'", "line 6")

    nested = tmp_path / "nested.yaml"
    nested.write_text(
        "data: {input_dir: docs, recursive: true, recursive: false}\nvector_store: {persist_dir: s}\n"
    )
    with pytest.raises(ConfigError, match="duplicate key 'recursive'"):
        load_config(nested)

    # YAML merge keys may still be overridden: that is what they are for.
    merged = tmp_path / "merged.yaml"
    merged.write_text(
        "base: &b {chunk_size: 128, chunk_overlap: 8}\n"
        "data: {input_dir: docs}\nvector_store: {persist_dir: s}\n"
        "chunking: {<<: *b, chunk_size: 64}\n"
    )
    with pytest.raises(ConfigError, match="unknown key 'base'"):  # a merge is fine; 'base' is not a section
        load_config(merged)
