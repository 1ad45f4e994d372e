"""Issue 32, item 4: one policy for every way in. The HTTP service (uvicorn on loopback, on its own
thread and event loop) and MCP (the SDK's in-process client) over one ``Indexer`` in one process:
one generation queue, the same limits and the same refusals, word for word."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from indexer import Indexer
from indexer.errors import StoreError
from tests.support.live_server import live_server

pytest.importorskip("mcp.server.mcpserver", reason="needs the mcp extra: pip install 'indexer[mcp]'")
pytestmark = pytest.mark.slow  # loads the embedder and the tiny GGUF, then answers over both ways in

QUESTION = "How often should the silica gel desiccant pack in the mast be replaced?"


@pytest.fixture(scope="module")
def indexer(built_sample: Path) -> Indexer:
    return Indexer.from_config(
        built_sample, {"server.queue_size": 1, "server.max_top_k": 20, "server.max_question_chars": 500}
    )


@pytest.fixture(scope="module")
def url(indexer: Indexer) -> Iterator[str]:
    from indexer.server import create_app

    with live_server(create_app(indexer)) as base:
        yield base


def _mcp(indexer: Indexer) -> Any:
    from mcp import Client

    from indexer.mcp_server import create_server

    return Client(create_server(indexer), read_timeout_seconds=120)


def _tool_error(result: Any) -> str:
    """The tool error's message, without the SDK's own "Error executing tool NAME: " before it."""
    assert result.is_error, result.content
    return str(result.content[0].text).split(": ", 1)[1]


async def _waiting(http: httpx.AsyncClient) -> int:
    return int((await http.get("/health")).json()["generation"]["waiting"])


def test_mcp_and_http_wait_in_one_generation_queue(indexer: Indexer, url: str) -> None:
    from indexer.ways_in import ways_in

    async def session() -> None:
        release = threading.Event()
        # The model, held by a job in the queue both ways in share.
        held = await ways_in(indexer).generation(lambda generation: release.wait(120) and None)
        try:
            async with httpx.AsyncClient(base_url=url, timeout=120) as http, _mcp(indexer) as mcp:
                one = {"question": QUESTION, "top_k": 1}
                queued = asyncio.ensure_future(http.post("/v1/query", json=one))
                with anyio.fail_after(30):
                    while await _waiting(http) != 1:
                        await anyio.sleep(0.05)

                # The line (server.queue_size: 1) is full for MCP too, with the HTTP refusal's words.
                turned_away = _tool_error(await mcp.call_tool("ask", one))
                busy = await http.post("/v1/query", json=one)
                assert busy.status_code == 503 and busy.json()["error"]["code"] == "queue_full"
                assert turned_away == busy.json()["error"]["message"]
                # Retrieval does not wait for the model, over either way in.
                searched = await mcp.call_tool("search", {"question": QUESTION, "top_k": 2})
                assert not searched.is_error and not queued.done()

                release.set()  # the HTTP answer waiting on another event loop gets its turn
                answered = await queued
                assert answered.status_code == 200, answered.text
                assert answered.json()["answer"] and answered.json()["sources"]
                asked = await mcp.call_tool("ask", one)
                assert not asked.is_error, asked.content

                # The slot passes on just after an answer's last event: a moment later, all is idle.
                with anyio.fail_after(30):
                    while (stats := (await http.get("/health")).json()["generation"])["running"]:
                        await anyio.sleep(0.05)
                assert stats["waiting"] == 0 and stats["rejected"] == 2 and stats["completed"] >= 3
        finally:
            release.set()
            async for _ in held.events():
                pass

    anyio.run(session)


def test_the_same_limits_and_error_mapping_over_http_and_mcp(
    indexer: Indexer, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fault_store_unavailable(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("the vector store is unavailable (a fault injected by the test)")

    async def refusals() -> list[tuple[int, str, str]]:
        asked = [
            {"question": QUESTION, "top_k": 10_000},
            {"question": "x" * 600, "top_k": 1},
            {"question": QUESTION, "top_k": 1},  # with the store down
        ]
        got = []
        async with httpx.AsyncClient(base_url=url, timeout=120) as http, _mcp(indexer) as mcp:
            for n, arguments in enumerate(asked):
                if n == 2:
                    monkeypatch.setattr(indexer.index, "chunk_store", fault_store_unavailable)
                response = await http.post("/v1/retrieve", json=arguments)
                over_mcp = _tool_error(await mcp.call_tool("search", arguments))
                got.append((response.status_code, response.json()["error"]["message"], over_mcp))
        return got

    (cap, too_long, store_down) = anyio.run(refusals)
    assert cap[0] == 400 and "server.max_top_k" in cap[1]
    assert too_long[0] == 400 and "server.max_question_chars" in too_long[1]
    assert store_down[0] == 503 and "injected by the test" in store_down[1]
    for _status, over_http, over_mcp in (cap, too_long, store_down):
        assert over_mcp == over_http
