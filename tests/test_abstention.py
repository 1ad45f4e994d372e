"""Abstention ("not in your documents"): a question the index cannot answer gets no LLM call, an answer that
says so, ``abstained: true`` and the nearest passages, labelled by relevance, through every front
door (CLI, Python, HTTP, the OpenAI route, MCP); an on-topic question is answered as before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer import Indexer
from indexer.query import relevance
from tests.adversarial.helpers import cli
from tests.support.live_server import live_server, sse_events
from tests.test_web_page import _ask, browser, serving  # noqa: F401 (browser: a fixture)

OFF_TOPIC = "What is the CEO's salary?"
ON_TOPIC = "Which radio frequency does the European version of the mast use to talk to the console?"
LABELS = {"strong", "weak", "none"}


@pytest.fixture
def fault_generation(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fault injection: generation fails the test's assertions if it is ever started; the list
    counts the calls it let through (none expected where the answer abstains)."""
    from indexer.components.llm import ChatLlamaCPP

    calls: list[int] = []
    real = ChatLlamaCPP.stream_tokens

    def fault_stream_tokens(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ChatLlamaCPP, "stream_tokens", fault_stream_tokens)
    return calls


def _assert_nearest_passages(sources: list[dict[str, Any]]) -> None:
    assert sources, "an abstaining answer still lists the nearest passages"
    for source in sources:
        assert source["file"] and source["text"]
        assert source["relevance_label"] == "none"
        assert isinstance(source["relevance"], float)


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_json_abstains_off_topic_without_calling_the_llm(
    built_sample: Path, fault_generation: list[int]
) -> None:
    result = cli("query", str(built_sample), OFF_TOPIC, "--json")
    assert result.returncode == 0, result.stderr
    data = result.json()
    assert data["abstained"] is True
    assert isinstance(data["answer"], str) and data["answer"]
    assert data["citations"] == []
    assert "not in your documents" in data["notice"]
    _assert_nearest_passages(data["sources"])
    assert fault_generation == []


@pytest.mark.slow
def test_cli_answers_on_topic_and_labels_each_source(built_sample: Path, fault_generation: list[int]) -> None:
    data = cli("query", str(built_sample), ON_TOPIC, "--json").json()
    assert data["abstained"] is False and isinstance(data["answer"], str)
    assert fault_generation == [1]
    assert {s["relevance_label"] for s in data["sources"]} <= LABELS
    assert data["sources"][0]["relevance_label"] in ("strong", "weak")

    shown = cli("query", str(built_sample), OFF_TOPIC)
    assert shown.returncode == 0
    assert "relevance none" in shown.stdout and "[1]" in shown.stdout
    assert "not in your documents" in shown.stderr


def test_retrieve_only_flags_abstention_without_an_answer(built_sample: Path) -> None:
    data = cli("query", str(built_sample), OFF_TOPIC, "--retrieve-only", "--json").json()
    assert data["answer"] is None and data["abstained"] is True
    _assert_nearest_passages(data["sources"])


# -- Python ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_python_api_abstains_off_topic_and_answers_on_topic(
    built_sample: Path, fault_generation: list[int]
) -> None:
    ix = Indexer.from_config(built_sample, {"llm.max_new_tokens": 4})
    answer = ix.query(OFF_TOPIC)
    assert answer.abstained is True and answer.answer and answer.sources
    assert all(s.relevance_label == "none" for s in answer.sources)
    assert answer.to_dict()["abstained"] is True
    assert fault_generation == []

    stream = ix.stream(OFF_TOPIC)  # streamed: the answer arrives as one piece
    assert stream.abstained and "".join(stream) == stream.answer

    answered = ix.query(ON_TOPIC)
    assert answered.abstained is False and answered.to_dict()["abstained"] is False
    assert fault_generation == [1]


def test_abstaining_can_be_turned_off(built_sample: Path, fault_generation: list[int]) -> None:
    ix = Indexer.from_config(built_sample, {"llm.max_new_tokens": 2, "query.abstain": False})
    answer = ix.query(OFF_TOPIC)
    assert answer.abstained is False and fault_generation == [1]
    assert all(s.relevance_label == "none" for s in answer.sources)  # still labelled


def test_the_threshold_is_a_config_field(built_sample: Path) -> None:
    ix = Indexer.from_config(built_sample, {"llm.provider": "none", "query.abstain_below": -1})
    assert ix.query(OFF_TOPIC).abstained is False
    ix = Indexer.from_config(built_sample, {"llm.provider": "none", "query.abstain_below": 1})
    assert ix.query(ON_TOPIC).abstained is True


@pytest.mark.parametrize("mode", ["vector", "bm25", "hybrid"])
def test_relevance_reads_the_same_across_questions_in_every_mode(built_sample: Path, mode: str) -> None:
    """Unlike the min-max fused score (rank 1 always 1.000), relevance separates the two."""
    ix = Indexer.from_config(built_sample, {"llm.provider": "none", "retrieval.mode": mode})
    on, off = ix.retrieve(ON_TOPIC), ix.retrieve(OFF_TOPIC)
    assert on.abstain is None and off.abstain is not None
    assert max(s.relevance or 0 for s in on) > max(s.relevance or 0 for s in off)


def test_labels_follow_the_thresholds() -> None:
    assert relevance.label(0.1, 0.3, 0.5) == "none"
    assert relevance.label(0.3, 0.3, 0.5) == "weak"
    assert relevance.label(0.5, 0.3, 0.5) == "strong"
    scores = {"vector": 0.6, "bm25": 2.0}
    assert relevance.source_relevance(scores, "vector", 0.5, 4.0) == 0.6
    assert relevance.source_relevance(scores, "bm25", 0.5, 4.0) == 0.5
    assert relevance.source_relevance(scores, "hybrid", 0.5, 4.0) == pytest.approx(0.55)
    assert relevance.source_relevance({"vector": 0.6}, "hybrid", 0.5, None) == pytest.approx(0.3)


def test_config_rejects_a_threshold_out_of_range(built_sample: Path) -> None:
    from tests.adversarial.helpers import assert_one_paragraph_error

    result = cli("query", str(built_sample), ON_TOPIC, "--set", "query.abstain_below=7")
    assert_one_paragraph_error(result, "query.abstain_below")


# -- HTTP, the OpenAI route -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(built_sample: Path) -> Iterator[str]:
    from indexer.server import create_app

    ix = Indexer.from_config(built_sample, {"llm.max_new_tokens": 4})
    with live_server(create_app(ix)) as url:
        yield url


def test_http_query_abstains_off_topic(server: str) -> None:
    with httpx.Client(base_url=server, timeout=120) as http:
        data = http.post("/v1/query", json={"question": OFF_TOPIC}).json()
        assert data["abstained"] is True and data["answer"]
        _assert_nearest_passages(data["sources"])

        with http.stream("POST", "/v1/query", json={"question": OFF_TOPIC, "stream": True}) as response:
            events = {name: json.loads(body) for name, body in sse_events(response)}
        assert events["done"]["abstained"] is True
        assert events["token"]["text"] == events["done"]["answer"]
        _assert_nearest_passages(events["sources"]["sources"])

        answered = http.post("/v1/query", json={"question": ON_TOPIC, "max_tokens": 2}).json()
        assert answered["abstained"] is False
        assert {s["relevance_label"] for s in answered["sources"]} <= LABELS

        found = http.post("/v1/retrieve", json={"question": OFF_TOPIC}).json()
        _assert_nearest_passages(found["sources"])


def test_openai_route_carries_abstained(server: str) -> None:
    with httpx.Client(base_url=server, timeout=120) as http:
        model = http.get("/v1/models").json()["data"][0]["id"]
        messages = [{"role": "user", "content": OFF_TOPIC}]
        body = http.post("/v1/chat/completions", json={"model": model, "messages": messages}).json()
        assert body["abstained"] is True
        assert body["choices"][0]["message"]["content"]
        _assert_nearest_passages(body["sources"])

        streamed = {"model": model, "messages": messages, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=streamed) as response:
            chunks = [json.loads(data) for _, data in sse_events(response) if data != "[DONE]"]
        assert chunks[-1]["abstained"] is True
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)

        on_topic = [{"role": "user", "content": ON_TOPIC}]
        asked = {"model": model, "messages": on_topic, "max_tokens": 2}
        assert http.post("/v1/chat/completions", json=asked).json()["abstained"] is False


# -- MCP --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_mcp_ask_carries_abstained(built_sample: Path) -> None:
    pytest.importorskip("mcp.server.mcpserver", reason="needs the mcp extra: pip install 'indexer[mcp]'")
    import anyio

    from tests.test_mcp_server import _client, _json

    async def session() -> None:
        async with _client(built_sample) as client:
            off = _json(await client.call_tool("ask", {"question": OFF_TOPIC}))
            assert off["abstained"] is True and off["answer"]
            _assert_nearest_passages(off["sources"])
            on = _json(await client.call_tool("ask", {"question": ON_TOPIC, "top_k": 1}))
            assert on["abstained"] is False

    anyio.run(session)


# -- the web page ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.browser
def test_web_page_shows_an_abstaining_answer_and_relevance_labels(
    browser: Any,  # noqa: F811 (the fixture imported from the page's tests)
    built_sample: Path,
) -> None:
    driver = browser
    with serving(built_sample) as url:
        driver.get(url + "/")
        turn = _ask(driver, ON_TOPIC)
        assert "abstained" not in (turn.get_attribute("class") or "").split()
        labels = [e.text for e in turn.find_elements("css selector", "ol.sources .relevance")]
        assert labels and set(labels) <= LABELS and labels[0] in ("strong", "weak")

        driver.get(url + "/")  # a new conversation: the tiny model would rewrite a follow-up
        turn = _ask(driver, OFF_TOPIC)
        assert "abstained" in (turn.get_attribute("class") or "").split()
        assert turn.find_element("css selector", ".answer").text.strip()
        items = turn.find_elements("css selector", "ol.sources li")
        assert items, "the nearest passages are listed"
        for item in items:
            label = item.find_element("css selector", ".relevance")
            assert "relevance-none" in label.get_attribute("class") and label.text == "none"
            assert label.get_attribute("title")  # the relevance value, on hover
