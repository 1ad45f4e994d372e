"""Issue 10, item 5: no input makes a chunk larger than ``chunk_size`` tokens (plus the splitter's
slack), text without separators is cut by tokens, and files above ``data.max_file_bytes`` are
skipped and listed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from indexer import Indexer
from indexer.ingestion.chunking import MAX_CHARS_PER_TOKEN
from tests.adversarial.helpers import cli, small_config, write_docs
from tests.support.stored import stored_chunks

CHUNK = 64
# The splitter's documented slack (ingestion/chunking.py): about one token per seam of a chunk.
SLACK = 4


@pytest.mark.slow
def test_text_without_separators_is_cut_by_tokens_and_huge_files_are_skipped(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    (docs / "one_word.txt").write_text("a" * 150_000)  # one "word": a single [UNK] to wordpiece
    (docs / "cjk.txt").write_text("数据索引检索" * 2_000)  # no spaces, no punctuation
    (docs / "digits.txt").write_text("0123456789" * 5_000)
    (docs / "spaces.txt").write_text("start" + " " * 100_000 + "end of the spaces")  # no tokens
    (docs / "too_big.txt").write_text("b " * 120_000)
    config = small_config(
        tmp_path / "cfg",
        docs,
        data={"input_dir": str(docs), "max_file_bytes": 200_000},
        chunking={"chunk_size": CHUNK, "chunk_overlap": 8},
    )

    started = time.perf_counter()
    summary = cli("build", str(config), "--json").json()
    assert time.perf_counter() - started < 90
    assert {s["file"]: s["reason"] for s in summary["skipped"]} == {
        "too_big.txt": "240000 bytes, larger than data.max_file_bytes (200000)"
    }

    ix = Indexer.from_config(config)
    per_file: dict[str, int] = {}
    for hit in stored_chunks(ix):
        tokens = len(ix.components.embedder.tokenize(hit.text))
        assert tokens <= CHUNK + SLACK, (hit.metadata["file"], tokens)
        assert len(hit.text) <= CHUNK * MAX_CHARS_PER_TOKEN, (hit.metadata["file"], len(hit.text))
        per_file[hit.metadata["file"]] = per_file.get(hit.metadata["file"], 0) + 1
    assert per_file["one_word.txt"] >= 150_000 // (CHUNK * MAX_CHARS_PER_TOKEN)
    assert per_file["cjk.txt"] >= 12_000 // CHUNK

    # The CLI prints a bounded snippet per source, whatever the chunk holds.
    result = cli("query", str(config), "aaaa", "--top-k", "3")
    assert result.returncode == 0
    assert max(len(line) for line in result.stdout.splitlines()) < 250
