"""Per-request retrieval mode and conversation history on the HTTP API (what the web page sends),
over real HTTP with the sample index and the tiny GGUF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer import Indexer
from tests.support.live_server import live_server, sse_events

QUESTION = "How often should the silica gel desiccant pack in the mast be replaced?"


@pytest.fixture(scope="module")
def client(built_sample: Path) -> Iterator[httpx.Client]:
    from indexer.server import create_app

    indexer = Indexer.from_config(built_sample, {"llm.max_new_tokens": 8})
    with live_server(create_app(indexer)) as url, httpx.Client(base_url=url, timeout=120) as http:
        yield http


@pytest.mark.parametrize(("mode", "parts"), [("vector", {"vector"}), ("bm25", {"bm25"})])
def test_retrieve_honours_the_mode(client: httpx.Client, mode: str, parts: set[str]) -> None:
    response = client.post("/v1/retrieve", json={"question": QUESTION, "top_k": 3, "mode": mode})
    assert response.status_code == 200, response.text
    sources = response.json()["sources"]
    assert len(sources) == 3 and all(set(s["scores"]) == parts for s in sources)


def test_hybrid_fuses_both_rankings(client: httpx.Client) -> None:
    sources = client.post("/v1/retrieve", json={"question": QUESTION, "mode": "hybrid"}).json()["sources"]
    assert any(set(s["scores"]) == {"vector", "bm25"} for s in sources)


def test_streamed_query_with_mode_and_history(client: httpx.Client) -> None:
    body = {
        "question": "and how is it checked?",
        "stream": True,
        "mode": "bm25",
        "top_k": 2,
        "history": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "Yearly [1]."}],
    }
    with client.stream("POST", "/v1/query", json=body) as response:
        assert response.status_code == 200
        names = [name for name, _ in sse_events(response)]
    assert names[-2:] == ["sources", "done"] and "token" in names


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"question": QUESTION, "mode": "telepathy"}, "mode"),
        ({"question": QUESTION, "mode": 3}, "mode"),
        ({"question": QUESTION, "history": [{"role": "system", "content": "x"}]}, "history.0.role"),
        (
            {"question": QUESTION, "history": [{"role": "user", "content": "x", "name": "y"}]},
            "history.0.name",
        ),
    ],
)
def test_bad_mode_or_history_is_a_400_naming_the_field(client: httpx.Client, body: dict, param: str) -> None:
    response = client.post("/v1/query", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
