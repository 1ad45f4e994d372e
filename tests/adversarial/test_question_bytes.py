"""Issue 30, item 9: a question holding bytes that are not UTF-8 (from the shell's argv, or a chat
line) is the one-paragraph error and exit 2 for ``query``; ``chat`` prints it and goes on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from indexer import Indexer
from indexer.errors import IndexerError
from tests.adversarial.helpers import Result, assert_one_paragraph_error, cli
from tests.conftest import ROOT

BAD = b"rain \xff\xfe gauge"


def _indexer(*args: str | bytes, stdin: bytes | None = None) -> Result:
    # Strict decoding, as a UTF-8 terminal locale (en_US.UTF-8) gives; C.UTF-8 alone would make
    # Python's stdin forgiving (surrogateescape) and hide half of the problem.
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8:strict"}
    done = subprocess.run(
        [sys.executable, "-m", "indexer", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    return Result(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))


@pytest.mark.slow
def test_query_with_non_utf8_bytes_in_argv_is_a_one_paragraph_error(built: Path) -> None:
    result = _indexer("query", str(built), BAD, "--retrieve-only")
    assert_one_paragraph_error(result, "the question", "0xff", "not UTF-8")
    assert len(result.stderr.strip().splitlines()) == 1


def test_query_in_process_with_escaped_bytes(built: Path) -> None:
    question = BAD.decode("utf-8", "surrogateescape")
    assert_one_paragraph_error(cli("query", str(built), question, "--retrieve-only"), "0xff")
    surrogate = cli("query", str(built), "desiccant \ud800", "--retrieve-only")
    assert_one_paragraph_error(surrogate, "lone surrogate")
    # The filter from the shell is checked the same way.
    result = cli("query", str(built), "desiccant", "--retrieve-only", "--filter", f"title={question}")
    assert_one_paragraph_error(result, "filters.title", "0xff")
    # The Python API refuses it too, before the embedder sees it.
    with pytest.raises(IndexerError, match=r"0xfe|0xff"):
        Indexer.from_config(built).retrieve(question)


@pytest.mark.slow
def test_chat_reports_a_bad_line_and_goes_on(built: Path) -> None:
    lines = [BAD, b"/bogus \xff", b"desiccant", b"/exit"]
    result = _indexer(
        "chat", str(built), "--set", "llm.provider=none", stdin=b"".join(line + b"\n" for line in lines)
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and all("0xff" in line for line in errors), result.stderr
    assert "Sources:" in result.stdout and "desiccant" in result.stdout
