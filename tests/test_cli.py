"""The CLI end to end: exit codes, --json schemas, errors without tracebacks.

The main paths run as real subprocesses (``python -m indexer``), as a user runs them; the many
variations run in-process through typer's runner, which exercises the same code without paying
for a torch import per case.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from indexer.cli import app
from tests.conftest import run_cli


class Result:
    """What a CLI run left behind, from a subprocess or the in-process runner alike."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def cli(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def assert_user_error(result: Result | subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.stderr.startswith("error: ")
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_help_lists_commands() -> None:
    """In a fresh process, as a user runs it (how long it takes: benchmarks/cold_start.py)."""
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("build", "query", "config"):
        assert command in result.stdout


@pytest.mark.slow
def test_build_query_and_config_with_json(sample_copy: Path, make_config, tiny_gguf: Path) -> None:
    config = make_config(sample_copy, model_path=tiny_gguf)

    build = run_cli("build", str(config), "--json")
    assert build.returncode == 0, build.stderr
    summary = json.loads(build.stdout)
    assert {
        "documents",
        "chunks",
        "seconds",
        "added",
        "updated",
        "deleted",
        "unchanged",
        "chunks_embedded",
        "skipped",
    } <= summary.keys()
    assert summary["documents"] == 10 and summary["chunks"] > 10 and summary["added"] == 10
    assert summary["dtype"]["dtype"] in ("float32", "bfloat16") and summary["dtype"]["reason"]

    again = json.loads(cli("build", str(config), "--json").stdout)
    assert again["unchanged"] == 10 and again["chunks_embedded"] == 0

    query = run_cli("query", str(config), "What does error code E-214 mean?", "--top-k", "3", "--json")
    assert query.returncode == 0, query.stderr
    answer = json.loads(query.stdout)
    assert isinstance(answer["answer"], str) and answer["answer"]
    assert len(answer["sources"]) == 3
    for rank, source in enumerate(answer["sources"], start=1):
        assert {"rank", "score", "file", "doc_id", "text"} <= source.keys()
        assert source["rank"] == rank

    only = json.loads(cli("query", str(config), "error code E-214", "--retrieve-only", "--json").stdout)
    assert only["answer"] is None and len(only["sources"]) == 4
    assert only["sources"][0]["file"] == "error_codes.csv"

    shown = cli("config", str(config), "--set", "query.top_k=9")
    assert shown.returncode == 0
    resolved = yaml.safe_load(shown.stdout)
    assert resolved["query"]["top_k"] == 9
    assert resolved["data"]["input_dir"] == str(sample_copy)


def test_query_streams_text_then_numbered_sources(built_sample: Path) -> None:
    result = cli("query", str(built_sample), "How high should the radiation shield be mounted?")
    assert result.returncode == 0, result.stderr
    answer, _, sources = result.stdout.partition("Sources:")
    assert answer.strip()
    assert "[1] " in sources and "[4] " in sources and "score" in sources


@pytest.mark.slow
def test_query_without_a_model_shows_sources_and_one_notice(built_sample_without_model: Path) -> None:
    config = built_sample_without_model
    result = cli("query", str(config), "How is the rain gauge calibrated?")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("note: ") == 1 and "llm.model_path" in result.stderr
    assert "guides/calibration.md" in result.stdout
    as_json = json.loads(cli("query", str(config), "rain gauge", "--json").stdout)
    assert as_json["answer"] is None and "llm.model_path" in as_json["notice"]


def test_errors_exit_2_with_one_paragraph_and_no_traceback(tmp_path: Path, make_config) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("data: {input_dir: [oops\n")
    assert_user_error(run_cli("build", str(bad_yaml)), str(bad_yaml), "malformed YAML", "line")

    typo = tmp_path / "typo.yaml"
    typo.write_text("data: {input_dir: docs}\nvector_store: {persist_dir: s}\nquery: {topk: 3}\n")
    assert_user_error(cli("config", str(typo)), str(typo), "query.topk", "top_k")

    assert_user_error(cli("build", str(make_config(tmp_path / "missing"))), "does not exist")
    assert_user_error(cli("query", str(make_config()), "anything"), "indexer build")
    assert_user_error(
        cli("build", str(make_config()), "--set", "vector_store.collection=x"), "collection", "3-512"
    )
    assert_user_error(cli("build", str(make_config()), "--set", "query.top_k"), "KEY=VALUE")
    assert_user_error(cli("config", str(tmp_path / "nope.yaml")), "config file not found")


@pytest.mark.slow
def test_required_model_missing_fails_before_answering(built_sample_without_model: Path) -> None:
    config = built_sample_without_model
    result = cli("query", str(config), "anything", "--set", "llm.required=true")
    assert_user_error(result, "llm.model_path is not set", "llm.required")


@pytest.mark.slow
def test_failed_build_leaves_the_index_intact(sample_copy: Path, make_config) -> None:
    config = make_config(sample_copy)
    assert cli("build", str(config)).returncode == 0
    before = json.loads(cli("query", str(config), "E-214", "--retrieve-only", "--json").stdout)
    failed = cli("build", str(config), "--set", "chunking.chunk_size=128")
    assert_user_error(failed, "chunk_size", "--rebuild")
    after = json.loads(cli("query", str(config), "E-214", "--retrieve-only", "--json").stdout)
    assert after == before


def test_console_script_is_installed(make_config) -> None:
    import shutil
    import sys

    script = Path(sys.executable).parent / "indexer"
    assert script.exists() or shutil.which("indexer")
    result = subprocess.run([str(script), "config", str(make_config())], capture_output=True, text=True)
    assert result.returncode == 0 and "vector_store:" in result.stdout
