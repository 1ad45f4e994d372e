"""Issue 30, item 7: the same bad values (lone surrogates in text, NaN and the infinities as
filter values, a lone-surrogate filter key) sent to every text and filter field of every route
are a 400 naming the field, quickly: never a 5xx that tells monitoring the service is down."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from indexer import Indexer
from tests.adversarial.helpers import small_config, write_docs
from tests.support.live_server import live_server

QUESTION = "How often is the desiccant replaced?"
BAD_TEXTS = ["\ud800", "rain \udfff gauge", "bytes \udcff\udcfe from a shell"]
BAD_NUMBERS = [float("nan"), float("inf"), float("-inf")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    from indexer.server import create_app

    root = tmp_path_factory.mktemp("malformed")
    config = small_config(root / "cfg", write_docs(root / "docs"))
    Indexer.from_config(config).build()
    with live_server(create_app(Indexer.from_config(config))) as url:
        models = httpx.get(f"{url}/v1/models").json()["data"]
        yield url, models[1]["id"]


def _post(url: str, body: dict[str, Any]) -> httpx.Response:
    # json.dumps writes NaN and Infinity as JavaScript does, and a lone surrogate as "\ud800":
    # what a client can put on the wire.
    raw = json.dumps(body, allow_nan=True)
    return httpx.post(url, content=raw, headers={"Content-Type": "application/json"}, timeout=60)


def _cases(chat_model: str, embedding_model: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(route, body, the field the 400 must name), for every text and filter field."""
    filtered = {
        "/v1/retrieve": {"question": QUESTION},
        "/v1/query": {"question": QUESTION, "max_tokens": 1},
        "/v1/chat/completions": {"model": chat_model, "messages": [{"role": "user", "content": QUESTION}]},
    }
    for text in BAD_TEXTS:
        yield "/v1/retrieve", {"question": text}, "question"
        for stream in (False, True):
            yield "/v1/query", {"question": text, "stream": stream}, "question"
            history = [{"role": "user", "content": "desiccant"}, {"role": "assistant", "content": text}]
            yield (
                "/v1/query",
                {"question": QUESTION, "history": history, "stream": stream},
                "history.1.content",
            )
            messages = [{"role": "user", "content": text}]
            body = {"model": chat_model, "messages": messages, "stream": stream}
            yield "/v1/chat/completions", body, "messages.0.content"
            messages = [{"role": "user", "content": text}, {"role": "user", "content": QUESTION}]
            yield "/v1/chat/completions", {"model": chat_model, "messages": messages}, "messages.0.content"
            parts = [{"type": "text", "text": "question: "}, {"type": "text", "text": text}]
            messages = [{"role": "user", "content": parts}]
            yield "/v1/chat/completions", {"model": chat_model, "messages": messages}, "messages.0.content"
        yield "/v1/chat/completions", {**filtered["/v1/chat/completions"], "model": text}, "model"
        yield "/v1/embeddings", {"model": embedding_model, "input": text}, "input"
        yield "/v1/embeddings", {"model": embedding_model, "input": ["fine", text]}, "input.1"
        yield "/v1/embeddings", {"model": text, "input": "fine"}, "model"
        for route, body in filtered.items():
            yield route, {**body, "filters": {"title": text}}, "filters"
            yield route, {**body, "filters": {text: "x"}}, "filters"
            yield route, {**body, "filters": {"path": "*.txt", f"key {text}": 3}}, "filters"
    for number in BAD_NUMBERS:
        for route, body in filtered.items():
            yield route, {**body, "filters": {"page": number}}, "filters"
            yield route, {**body, "top_k": number}, "top_k"
        yield "/v1/query", {"question": QUESTION, "max_tokens": number}, "max_tokens"
        for field in ("temperature", "top_p", "max_tokens", "n"):
            yield "/v1/chat/completions", {**filtered["/v1/chat/completions"], field: number}, field
        yield (
            "/v1/embeddings",
            {"model": embedding_model, "input": "fine", "dimensions": number},
            "dimensions",
        )


@pytest.mark.slow
def test_every_text_and_filter_field_of_every_route_is_a_400_naming_it(server: tuple[str, str]) -> None:
    url, embedding_model = server
    chat_model = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
    failures = []
    count = 0
    for route, body, param in _cases(chat_model, embedding_model):
        count += 1
        started = time.monotonic()
        response = _post(f"{url}{route}", body)
        took = time.monotonic() - started
        try:
            error = response.json()["error"]
        except (ValueError, KeyError):
            error = {"message": response.text, "param": None}
        if (
            response.status_code != 400
            or error["param"] != param
            or param not in error["message"]
            or took > 5
        ):
            failures.append((route, json.dumps(body)[:160], response.status_code, error, round(took, 2)))
    assert not failures, "\n".join(map(str, failures))
    assert count > 100

    # Strings that read as NaN or infinities are strings: no match, and no bad where clause.
    for text in ("NaN", "Infinity", "-inf", "1e999"):
        for route, body in (("/v1/retrieve", {}), ("/v1/query", {"max_tokens": 1})):
            response = _post(f"{url}{route}", {"question": QUESTION, "filters": {"page": text}, **body})
            assert response.status_code == 200 and response.json()["sources"] == [], response.text

    # The same routes still answer a good request.
    assert _post(f"{url}/v1/retrieve", {"question": QUESTION, "filters": {"page": 1.5}}).status_code == 200
    good = {"question": QUESTION, "history": [{"role": "user", "content": "desiccant"}]}
    assert _post(f"{url}/v1/query", good).status_code == 200


def test_an_unknown_field_whose_name_is_no_unicode_is_a_400(server: tuple[str, str]) -> None:
    url, _ = server
    response = _post(f"{url}/v1/retrieve", {"question": QUESTION, "\ud800": 1})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]
