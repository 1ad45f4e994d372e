"""Issue 10, item 12: client input that Chroma, the keyword index or the tokenizer cannot take is
a 400 naming the field, in every retrieval mode, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer import Indexer
from indexer.errors import ConfigError
from tests.support.live_server import live_server

QUESTION = "How often is the desiccant replaced?"


@pytest.fixture(scope="module", params=["vector", "bm25", "hybrid"])
def server(request: pytest.FixtureRequest, built: Path) -> Iterator[str]:
    from indexer.server import create_app

    indexer = Indexer.from_config(built, {"retrieval.mode": request.param})
    with live_server(create_app(indexer)) as url:
        yield url


BAD_FILTERS = [
    ({"path": ["a.txt", "b.txt"]}, "filters", "not a list"),
    ({"page": [1, 2]}, "filters", "not a list"),
    ({"$or": "x"}, "filters", "query operators"),
    ({"title": {"$ne": "x"}}, "filters", "not dict"),
]


@pytest.mark.parametrize(("filters", "param", "needle"), BAD_FILTERS)
def test_bad_filters_are_a_400_naming_the_field(server: str, filters: dict, param: str, needle: str) -> None:
    for path, extra in (("/v1/retrieve", {}), ("/v1/query", {"max_tokens": 1})):
        body = {"question": QUESTION, "filters": filters, **extra}
        response = httpx.post(f"{server}{path}", json=body, timeout=60)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == param and needle in error["message"], error
    good = httpx.post(f"{server}/v1/retrieve", json={"question": QUESTION, "filters": {"path": "*.txt"}})
    assert good.status_code == 200


def test_lone_surrogates_are_a_400_naming_the_field(server: str) -> None:
    model = httpx.get(f"{server}/v1/models").json()["data"][1]["id"]
    cases = [
        ("/v1/embeddings", {"model": model, "input": "bad \ud800 text"}, "input"),
        ("/v1/embeddings", {"model": model, "input": ["fine", "bad \udfff"]}, "input.1"),
        ("/v1/retrieve", {"question": "desiccant \ud800"}, "question"),
    ]
    for path, body, param in cases:
        raw = json.dumps(body)  # ASCII, "\\ud800" escaped: what a client can send
        response = httpx.post(
            f"{server}{path}", content=raw, headers={"Content-Type": "application/json"}, timeout=60
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == param, error
        assert "lone surrogate" in error["message"] or "unicode" in error["message"], error


def test_the_python_api_refuses_the_same_filters(built: Path) -> None:
    ix = Indexer.from_config(built, {"retrieval.mode": "bm25"})
    with pytest.raises(ConfigError, match=r"filters\.page: must be one string"):
        ix.retrieve(QUESTION, filters={"page": [1, 2]})  # type: ignore[dict-item]
