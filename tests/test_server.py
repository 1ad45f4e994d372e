"""The HTTP service over real HTTP on loopback: uvicorn in a thread, the sample index, the tiny GGUF.

One server for the module (an API key set, a one-request waiting line, and a model allowed to
generate long answers, which the tests cap per request with max_tokens unless they want it slow).
"""

from __future__ import annotations

import base64
import json
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from indexer import Indexer
from tests.support.live_server import live_server, sse_events, wait_until

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUESTION = "Which radio frequency does the European mast use?"
LONG_ANSWER_TOKENS = 2000  # the tiny model needs tens of seconds for this many


@pytest.fixture(scope="module")
def indexer(built_sample: Path) -> Indexer:
    return Indexer.from_config(
        built_sample,
        {
            "server.api_key": KEY,
            "server.queue_size": 1,
            "server.max_question_chars": 500,
            "server.max_top_k": 20,
            "server.max_body_bytes": 20_000,
            "llm.max_new_tokens": LONG_ANSWER_TOKENS,
            # The tiny random model rewrites a follow-up into noise, which abstains: these tests
            # are about the protocol (tests/test_abstention.py is about abstaining).
            "query.abstain": False,
        },
    )


@pytest.fixture(scope="module")
def server(indexer: Indexer) -> Iterator[str]:
    from indexer.server import create_app

    with live_server(create_app(indexer)) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=60) as http:
        yield http
        # Leave the model idle for the next test, whatever this one did.
        assert wait_until(lambda: _queue(http) == (0, 0)), _queue(http)


def _queue(http: httpx.Client) -> tuple[int, int]:
    stats = http.get("/health").json()["generation"]
    return stats["running"], stats["waiting"]


# -- plain endpoints ---------------------------------------------------------------------------


def test_health_is_open_and_reports_the_queue(server: str) -> None:
    response = httpx.get(f"{server}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {"running", "waiting", "max_waiting", "completed", "cancelled", "rejected"} <= body[
        "generation"
    ].keys()


def test_index_describes_the_manifest_and_counts(client: httpx.Client, built_sample: Path) -> None:
    body = client.get("/v1/index").json()
    manifest = json.loads((built_sample.parent / "storage" / "indexer-manifest.json").read_text())
    assert body["counts"]["documents"] == len(manifest["files"]) == 10
    assert (
        body["counts"]["chunks"]
        == body["counts"]["vectors"]
        == sum(f["chunks"] for f in manifest["files"].values())
    )
    assert body["manifest"]["embedding"]["dimension"] == 384
    assert body["llm"] is True and body["collection"] == "test"


def test_models_lists_the_rag_model_and_the_embedding_model(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["indexer-test", "sentence-transformers/all-MiniLM-L6-v2"]


def test_openapi_is_served_and_docs_are_off_by_default(client: httpx.Client) -> None:
    # Swagger UI would load its scripts from a CDN: /docs only with server.docs: true.
    assert client.get("/docs").status_code == 404
    openapi = client.get("/openapi.json").json()
    expected = {"/v1/query", "/v1/retrieve", "/v1/chat/completions", "/v1/models", "/v1/embeddings"}
    assert expected | {"/health", "/v1/index"} <= openapi["paths"].keys()
    source = openapi["components"]["schemas"]["Source"]["properties"]
    types = {"rank": "integer", "score": "number", "file": "string", "doc_id": "string", "chunk_id": "string"}
    assert {name: source[name]["type"] for name in types} == types
    assert source["text"]["type"] == "string" and source["scores"]["type"] == "object"


def test_retrieve_returns_ranked_sources_like_the_python_api(client: httpx.Client, indexer: Indexer) -> None:
    response = client.post("/v1/retrieve", json={"question": QUESTION, "top_k": 3})
    assert response.status_code == 200
    sources = response.json()["sources"]
    assert [s["rank"] for s in sources] == [1, 2, 3]
    assert [s["chunk_id"] for s in sources] == [s.chunk_id for s in indexer.retrieve(QUESTION, top_k=3)]
    assert all(s["text"] and s["file"] for s in sources)


def test_filters_reach_the_engine_on_retrieve_and_query(client: httpx.Client, indexer: Indexer) -> None:
    filters = {"path": "faq.html"}
    assert {s.file for s in indexer.retrieve(QUESTION, top_k=3)} != {"faq.html"}  # the filter must matter
    retrieved = client.post("/v1/retrieve", json={"question": QUESTION, "top_k": 3, "filters": filters})
    assert retrieved.status_code == 200, retrieved.text
    expected = [s.chunk_id for s in indexer.retrieve(QUESTION, top_k=3, filters=filters)]
    assert expected and [s["chunk_id"] for s in retrieved.json()["sources"]] == expected
    assert {s["file"] for s in retrieved.json()["sources"]} == {"faq.html"}
    answered = client.post(
        "/v1/query", json={"question": QUESTION, "top_k": 3, "max_tokens": 4, "filters": filters}
    )
    assert answered.status_code == 200, answered.text
    assert [s["chunk_id"] for s in answered.json()["sources"]] == expected


def test_query_answers_with_sources(client: httpx.Client) -> None:
    response = client.post("/v1/query", json={"question": QUESTION, "top_k": 2, "max_tokens": 8})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["answer"], str) and body["answer"]
    assert [s["rank"] for s in body["sources"]] == [1, 2]
    assert body["finish_reason"] == "length"


def test_query_streams_tokens_then_sources_then_done(client: httpx.Client) -> None:
    payload = {"question": QUESTION, "top_k": 2, "max_tokens": 12, "stream": True}
    with client.stream("POST", "/v1/query", json=payload) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response))
    names = [name for name, _ in events]
    assert names[-2:] == ["sources", "done"] and set(names[:-2]) == {"token"}
    assert 1 <= len(names) - 2 <= 12
    tokens = "".join(json.loads(data)["text"] for name, data in events if name == "token")
    done = json.loads(events[-1][1])
    assert done["answer"] == tokens and done["finish_reason"] in ("stop", "length")
    assert [s["rank"] for s in json.loads(events[-2][1])["sources"]] == [1, 2]


def test_embeddings_are_the_index_models_vectors(client: httpx.Client, indexer: Indexer) -> None:
    texts = ["rain gauge calibration", "anemometer connector"]
    model = "sentence-transformers/all-MiniLM-L6-v2"
    floats = client.post("/v1/embeddings", json={"model": model, "input": texts}).json()
    packed = client.post(
        "/v1/embeddings", json={"model": model, "input": texts, "encoding_format": "base64"}
    ).json()
    expected = indexer.components.embedder.embed(texts)
    as_floats = np.array([d["embedding"] for d in floats["data"]])
    as_base64 = np.array([struct.unpack("<384f", base64.b64decode(d["embedding"])) for d in packed["data"]])
    assert as_floats.shape == (2, 384)
    np.testing.assert_allclose(as_floats, expected, atol=1e-5)
    np.testing.assert_allclose(as_base64, expected, atol=1e-5)
    assert floats["usage"]["prompt_tokens"] > 0 and [d["index"] for d in floats["data"]] == [0, 1]


# -- the official openai client, unmodified --------------------------------------------------------


def _openai(server: str, key: str = KEY) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0)


def test_openai_client_chat_completion(server: str, client: httpx.Client) -> None:
    completion = _openai(server).chat.completions.create(
        model="indexer-test",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the mast?"},
            {"role": "assistant", "content": "A weather mast."},
            {"role": "user", "content": QUESTION},
        ],
        max_tokens=8,
        extra_body={"top_k": 2},
    )
    assert completion.object == "chat.completion" and completion.model == "indexer-test"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"
    assert completion.usage.completion_tokens == 8 and completion.usage.prompt_tokens > 0
    sources = completion.model_extra["sources"]
    assert [s["rank"] for s in sources] == [1, 2] and all(s["file"] for s in sources)


def test_openai_client_streaming_chat(server: str, client: httpx.Client) -> None:
    stream = _openai(server).chat.completions.create(
        model="indexer-test",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "length"
    assert len(finals[0].model_extra["sources"]) == 4
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10


def test_openai_client_models_and_embeddings(server: str) -> None:
    client = _openai(server)
    assert {m.id for m in client.models.list()} == {"indexer-test", "sentence-transformers/all-MiniLM-L6-v2"}
    result = client.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input="rain gauge")
    vector = np.array(result.data[0].embedding)
    assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1.0) < 1e-4


def test_openai_client_sees_clear_errors(server: str) -> None:
    import openai

    with pytest.raises(openai.AuthenticationError):
        _openai(server, key="wrong").models.list()
    with pytest.raises(openai.NotFoundError, match="unknown model 'gpt-4o'"):
        _openai(server).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


# -- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}],
    ids=["none", "wrong-key", "no-scheme", "basic"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("GET", "/v1/index"),
        ("POST", "/v1/query"),
        ("GET", "/docs"),
        ("GET", "/nowhere"),
    ],
)
def test_every_endpoint_but_health_needs_the_key(server: str, headers: dict, method: str, path: str) -> None:
    response = httpx.request(method, f"{server}{path}", headers=headers, json={"question": "x"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_api_key"


# -- bad requests: 4xx naming the field, never a 500 or a traceback ----------------------------------

LONG = "x" * 501
BAD_REQUESTS = [
    ("/v1/query", {"question": 123}, 400, "question"),
    ("/v1/query", {"question": QUESTION, "top_k": "five"}, 400, "top_k"),
    ("/v1/query", {"question": QUESTION, "top_k": 2.5}, 400, "top_k"),
    ("/v1/query", {"question": QUESTION, "stream": "yes"}, 400, "stream"),
    ("/v1/query", {"question": ["a", "b"]}, 400, "question"),
    ("/v1/query", {}, 400, "question"),
    ("/v1/query", {"question": ""}, 400, "question"),
    ("/v1/query", {"question": "   \n "}, 400, "question"),
    ("/v1/query", {"question": LONG}, 400, "question"),
    ("/v1/query", {"question": QUESTION, "top_k": 0}, 400, "top_k"),
    ("/v1/query", {"question": QUESTION, "top_k": 21}, 400, "top_k"),
    ("/v1/query", {"question": QUESTION, "max_tokens": -1}, 400, "max_tokens"),
    ("/v1/query", {"question": QUESTION, "topk": 3}, 400, "topk"),
    ("/v1/query", {"question": QUESTION, "filters": "faq.html"}, 400, "filters"),
    ("/v1/query", [QUESTION], 400, "body"),
    ("/v1/retrieve", {"question": LONG}, 400, "question"),
    ("/v1/retrieve", {"question": QUESTION, "top_k": 10_000}, 400, "top_k"),
    ("/v1/retrieve", {"question": None}, 400, "question"),
    (
        "/v1/chat/completions",
        {"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
        404,
        "model",
    ),
    ("/v1/chat/completions", {"model": "indexer-test", "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"model": "indexer-test"}, 400, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, 400, "model"),
    (
        "/v1/chat/completions",
        {
            "model": "indexer-test",
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}],
        },
        400,
        "messages",
    ),
    (
        "/v1/chat/completions",
        {"model": "indexer-test", "messages": [{"role": "wizard", "content": "hi"}]},
        400,
        "messages.0.role",
    ),
    (
        "/v1/chat/completions",
        {"model": "indexer-test", "messages": [{"role": "user", "content": LONG}]},
        400,
        "messages",
    ),
    (
        "/v1/chat/completions",
        {"model": "indexer-test", "messages": [{"role": "user", "content": "hi"}], "n": 3},
        400,
        "n",
    ),
    (
        "/v1/chat/completions",
        {"model": "indexer-test", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"},
        400,
        "temperature",
    ),
    ("/v1/embeddings", {"model": "nope", "input": "x"}, 404, "model"),
    ("/v1/embeddings", {"model": "sentence-transformers/all-MiniLM-L6-v2", "input": []}, 400, "input"),
    ("/v1/embeddings", {"model": "sentence-transformers/all-MiniLM-L6-v2", "input": [1, 2]}, 400, "input"),
    ("/v1/embeddings", {"model": "sentence-transformers/all-MiniLM-L6-v2", "input": 7}, 400, "input"),
    (
        "/v1/embeddings",
        {"model": "sentence-transformers/all-MiniLM-L6-v2", "input": "x", "dimensions": 768},
        400,
        "dimensions",
    ),
]


@pytest.mark.parametrize(("path", "body", "status", "param"), BAD_REQUESTS)
def test_bad_requests_get_a_4xx_naming_the_field(
    client: httpx.Client, path: str, body: Any, status: int, param: str
) -> None:
    response = client.post(path, json=body)
    _assert_clean_error(response, status, param)


def _assert_clean_error(response: httpx.Response, status: int, param: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert param.split(".")[0] in error["message"] or param == "body"
    assert "Traceback" not in response.text and 'File "' not in response.text


@pytest.mark.parametrize(
    "raw",
    [b'{"question": "x",', b"not json at all", b"", b'{"question": "\xff\xfe"}'],
    ids=["cut", "text", "empty", "bytes"],
)
def test_malformed_json_is_a_400(client: httpx.Client, raw: bytes) -> None:
    response = client.post("/v1/query", content=raw, headers={"Content-Type": "application/json"})
    _assert_clean_error(response, 400, "body")


def test_oversized_bodies_are_refused_declared_or_streamed(client: httpx.Client) -> None:
    big = json.dumps({"question": "x" * 30_000}).encode()
    _assert_clean_error(
        client.post("/v1/query", content=big, headers={"Content-Type": "application/json"}), 413, "body"
    )

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit must hold while reading
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    _assert_clean_error(
        client.post("/v1/query", content=chunked(), headers={"Content-Type": "application/json"}), 413, "body"
    )


def test_unknown_paths_and_methods_are_json_4xx(client: httpx.Client) -> None:
    assert client.get("/v1/nowhere").status_code == 404
    assert client.get("/v1/nowhere").json()["error"]["message"].startswith("no such endpoint")
    assert client.get("/v1/query").status_code == 405


# -- concurrency: the generation queue ------------------------------------------------------------------


def _open_stream(http: httpx.Client, path: str = "/v1/query", **extra: Any) -> tuple[httpx.Response, Any]:
    """A streaming answer and its events; keep both: dropping the iterator closes the connection."""
    body = {"question": QUESTION, "top_k": 1, "stream": True, **extra}
    response = http.send(http.build_request("POST", path, json=body), stream=True)
    return response, sse_events(response)


def test_retrieval_runs_while_an_answer_is_generating(client: httpx.Client) -> None:
    response, events = _open_stream(client)
    try:
        assert next(events)[0] == "token"
        assert _queue(client) == (1, 0)
        # Served while the long answer is still in progress: it keeps producing tokens after.
        assert client.post("/v1/retrieve", json={"question": "rain gauge", "top_k": 2}).status_code == 200
        embedding = {"model": "sentence-transformers/all-MiniLM-L6-v2", "input": "x"}
        assert client.post("/v1/embeddings", json=embedding).status_code == 200
        assert [next(events)[0] for _ in range(3)] == ["token"] * 3
        assert _queue(client) == (1, 0)
    finally:
        response.close()


def test_a_full_queue_answers_503_with_retry_after(client: httpx.Client, server: str) -> None:
    before = client.get("/health").json()["generation"]
    running, running_events = _open_stream(client)
    waiting: list[tuple[httpx.Response, Any]] = []
    second = httpx.Client(base_url=server, headers=AUTH, timeout=120)
    thread = threading.Thread(target=lambda: waiting.append(_open_stream(second)), daemon=True)
    try:
        assert next(running_events)[0] == "token"
        thread.start()
        assert wait_until(lambda: _queue(client) == (1, 1))

        busy = client.post("/v1/query", json={"question": QUESTION, "max_tokens": 4})
        assert busy.status_code == 503
        assert int(busy.headers["retry-after"]) >= 1
        assert busy.json()["error"]["code"] == "queue_full"
        chat = client.post(
            "/v1/chat/completions",
            json={"model": "indexer-test", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        )
        assert chat.status_code == 503 and "retry-after" in chat.headers
        # Retrieval does not queue behind the model.
        assert client.post("/v1/retrieve", json={"question": QUESTION}).status_code == 200

        running.close()  # the first client leaves: the waiting one is served at once
        thread.join(timeout=30)
        assert waiting and waiting[0][0].status_code == 200
        assert next(waiting[0][1])[0] == "token"
    finally:
        running.close()
        thread.join(timeout=30)
        for response, _ in waiting:
            response.close()
        second.close()
    after = client.get("/health").json()["generation"]
    assert after["rejected"] - before["rejected"] == 2


@pytest.mark.parametrize("path", ["/v1/query", "/v1/chat/completions"])
def test_a_client_disconnecting_mid_stream_frees_the_model_at_once(client: httpx.Client, path: str) -> None:
    before = client.get("/health").json()["generation"]["cancelled"]
    extra = (
        {"model": "indexer-test", "messages": [{"role": "user", "content": QUESTION}]}
        if path != "/v1/query"
        else {}
    )
    response, events = _open_stream(client, path, **extra)
    for _ in range(3):
        next(events)
    response.close()  # LONG_ANSWER_TOKENS would keep the model busy for a long while
    with httpx.Client(base_url=str(client.base_url), headers=AUTH, timeout=30) as fresh:
        # Served long before the abandoned answer could have finished (it stopped within a token).
        answer = fresh.post("/v1/query", json={"question": QUESTION, "max_tokens": 4})
    assert answer.status_code == 200 and answer.json()["answer"]
    assert client.get("/health").json()["generation"]["cancelled"] == before + 1
