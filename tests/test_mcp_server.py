"""`indexer mcp CONFIG` as an MCP client meets it: the SDK's own client starts it over stdio against
a real index (MiniLM, embedded Chroma, the tiny GGUF) and lists, calls and reads."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import ROOT

pytest.importorskip("mcp.server.mcpserver", reason="needs the mcp extra: pip install 'indexer[mcp]'")

QUESTION = "How often should the silica gel desiccant pack in the mast be replaced?"


def _client(config: Path, *args: str) -> Any:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "indexer", "mcp", str(config), *args],
        cwd=str(ROOT),
        env={key: value for key, value in os.environ.items() if key != "PYTHONSTARTUP"},
    )
    return Client(params, read_timeout_seconds=300)


def _json(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return dict(result.structured_content)
    return json.loads(result.content[0].text)


@pytest.mark.slow
def test_mcp_over_stdio_lists_calls_and_reads(built_sample: Path) -> None:
    async def session() -> None:
        async with _client(built_sample) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert {"search", "ask"} <= set(tools)
            schema = tools["search"].input_schema
            assert {"question", "top_k", "mode", "filters"} <= set(schema["properties"])
            assert schema["required"] == ["question"]

            found = _json(
                await client.call_tool("search", {"question": QUESTION, "top_k": 3, "mode": "hybrid"})
            )
            passages = found["passages"]
            assert [p["rank"] for p in passages] == [1, 2, 3]
            for passage in passages:
                assert passage["file"] and passage["text"] and isinstance(passage["score"], float)
                assert passage["citation"].startswith(passage["file"])

            only_guides = _json(
                await client.call_tool(
                    "search",
                    {"question": QUESTION, "top_k": 2, "mode": "bm25", "filters": {"path": "guides/*"}},
                )
            )
            assert only_guides["passages"]
            assert all(p["file"].startswith("guides/") for p in only_guides["passages"])
            assert all(set(p["scores"]) == {"bm25"} for p in only_guides["passages"])

            answered = _json(await client.call_tool("ask", {"question": QUESTION, "top_k": 2}))
            assert answered["answer"]  # the tiny model's words are noise; that there are some is the point
            assert len(answered["sources"]) >= 1
            assert isinstance(answered["citations"], list)

            # A bad argument is an MCP tool error, and the server keeps serving.
            for bad in (
                {"question": ""},
                {"question": QUESTION, "top_k": 0},
                {"question": QUESTION, "mode": "telepathy"},
                {"question": QUESTION, "top_k": 10_000},
                {"top_k": 2},
            ):
                result = await client.call_tool("search", bad)
                assert result.is_error, bad
                assert result.content and result.content[0].text

            resources = {str(r.uri): r for r in (await client.list_resources()).resources}
            assert "indexer://status" in resources
            assert "indexer://files/guides/calibration.md" in resources
            templates = (await client.list_resource_templates()).resource_templates
            assert any(t.uri_template == "indexer://files/{+path}" for t in templates)

            status = json.loads((await client.read_resource("indexer://status")).contents[0].text)
            assert status["built"] is True and status["chunks"] > 0

            file_text = (await client.read_resource("indexer://files/guides/calibration.md")).contents[0].text
            assert file_text.startswith("guides/calibration.md:") and "--- passage 1" in file_text

            with pytest.raises(Exception, match="not an indexed file"):
                await client.read_resource("indexer://files/nowhere.md")

            still = _json(await client.call_tool("search", {"question": QUESTION, "top_k": 1}))
            assert len(still["passages"]) == 1

    anyio.run(session)


@pytest.mark.slow
def test_mcp_without_a_model_returns_sources_only(built_sample: Path) -> None:
    async def session() -> None:
        async with _client(built_sample, "--set", "llm.provider=none") as client:
            answered = _json(await client.call_tool("ask", {"question": QUESTION, "top_k": 2}))
            assert answered["answer"] is None and answered["notice"]
            assert len(answered["sources"]) == 2

    anyio.run(session)


def test_mcp_without_an_index_is_a_clear_error(make_config) -> None:
    from tests.conftest import run_cli

    result = run_cli("mcp", str(make_config()), timeout=120)
    assert result.returncode == 2
    assert "run `indexer build CONFIG` first" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_mcp_over_streamable_http_on_loopback(built_sample: Path) -> None:
    import signal
    import subprocess
    import time

    from mcp import Client

    from tests.support.live_server import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "indexer", "mcp", str(built_sample), "--http", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    async def session() -> list[str]:
        deadline = time.monotonic() + 180
        while True:
            try:
                async with Client(f"http://127.0.0.1:{port}/mcp", read_timeout_seconds=120) as client:
                    found = _json(await client.call_tool("search", {"question": QUESTION, "top_k": 1}))
                    return [p["file"] for p in found["passages"]]
            except Exception:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                await anyio.sleep(0.5)

    try:
        assert len(anyio.run(session)) == 1
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/mcp" in err and "Traceback" not in err
