"""A missing optional extra is a one-paragraph error naming the extra, not a traceback: every guard
(formats, openai, server, eval, mcp, watch) is made to fire.

The missing package is a named fault: ``sys.modules[NAME] = None`` in a fresh process makes
``import NAME`` fail exactly as it does when the package is not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLE_DIR, SAMPLE_QUESTIONS, write_config

_MISSING_PACKAGE_FAULT = "import sys\nsys.modules[{module!r}] = None\n"

# The CLI, as `indexer ARGS` runs it.
_CLI = """
from indexer.cli import main
sys.argv = ["indexer", *{args!r}]
main()
"""

# The file reader that a build runs on each file: its skip reason, as the build summary shows it.
_READ = """
from pathlib import Path
from indexer.ingestion.readers import UnreadableFile, read_file
try:
    read_file(Path({path!r}))
except UnreadableFile as exc:
    print(exc)
"""


# MCP over an index, without touching the model: a top_k over the cap is refused by the policy the
# HTTP service shares (indexer.ways_in), which must not need FastAPI.
_MCP_REFUSAL = """
import anyio
from mcp import Client
from indexer import Indexer
from indexer.mcp_server import create_server

async def ask():
    async with Client(create_server(Indexer.from_config({config!r}))) as client:
        result = await client.call_tool("search", {{"question": "x", "top_k": 100000}})
        print(result.is_error, result.content[0].text)

anyio.run(ask)
assert "fastapi" not in {{name.split(".")[0] for name in sys.modules if sys.modules[name] is not None}}
"""


def _run_with_missing_package_fault(module: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _MISSING_PACKAGE_FAULT.format(module=module) + script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def _assert_names_extra(result: subprocess.CompletedProcess[str], extra: str) -> None:
    assert result.returncode == 2, result.stderr
    assert f"pip install '{extra}'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("module", "args", "extra"),
    [
        ("mcp", ["mcp", "config.yaml"], "indexer[mcp]"),
        ("watchfiles", ["watch", "config.yaml"], "indexer[watch]"),
        ("watchfiles", ["serve", "config.yaml", "--watch"], "indexer[watch]"),
        ("fastapi", ["serve", "config.yaml"], "indexer[server]"),
        ("uvicorn", ["serve", "config.yaml"], "indexer[server]"),
    ],
)
def test_a_missing_extra_names_it(module: str, args: list[str], extra: str) -> None:
    _assert_names_extra(_run_with_missing_package_fault(module, _CLI.format(args=args)), extra)


@pytest.mark.slow  # a fresh interpreter that imports the MCP SDK and indexer's query side
def test_mcp_shares_the_servers_policy_without_the_server_extra(tmp_path: Path) -> None:
    pytest.importorskip("mcp.server.mcpserver", reason="needs the mcp extra: pip install 'indexer[mcp]'")
    config = write_config(tmp_path, SAMPLE_DIR)
    result = _run_with_missing_package_fault("fastapi", _MCP_REFUSAL.format(config=str(config)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("True ") and "(server.max_top_k)" in result.stdout


def test_the_eval_chart_without_matplotlib_names_the_eval_extra(tmp_path: Path) -> None:
    config = write_config(tmp_path, SAMPLE_DIR, llm={"provider": "none"})
    args = ["eval", str(config), "--dataset", str(SAMPLE_QUESTIONS), "--out", str(tmp_path / "runs")]
    result = _run_with_missing_package_fault("matplotlib", _CLI.format(args=args))
    _assert_names_extra(result, "indexer[eval]")
    assert not (tmp_path / "runs").exists()  # refused before any work


def test_the_openai_like_llm_without_openai_names_the_openai_extra(tmp_path: Path) -> None:
    config = write_config(tmp_path, SAMPLE_DIR)
    llm = ["llm.provider=openai_like", "llm.base_url=http://127.0.0.1:9/v1", "llm.model=any"]
    args = ["eval", "generate", str(config), "--out", str(tmp_path / "q.jsonl")]
    args += [part for setting in llm for part in ("--set", setting)]
    _assert_names_extra(_run_with_missing_package_fault("openai", _CLI.format(args=args)), "indexer[openai]")


@pytest.mark.parametrize(
    ("module", "name"),
    [("pptx", "slides.pptx"), ("ebooklib", "book.epub"), ("odf", "letter.odt"), ("odf", "sheet.ods")],
)
def test_a_format_reader_without_its_package_names_the_formats_extra(
    tmp_path: Path, module: str, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04")  # never parsed: the guard fires first
    result = _run_with_missing_package_fault(module, _READ.format(path=str(path)))
    assert result.returncode == 0, result.stderr
    assert "pip install 'indexer[formats]'" in result.stdout
