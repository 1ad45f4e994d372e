"""Results are returned, not stashed (issue 32): a question's notices travel in its own result, and
an answer's token usage and ``max_tokens`` cap are its own and counted in the model's tokens, even
while other requests use the same engine and model (``/v1/retrieve`` runs on worker threads while
an answer is generated)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from indexer import Indexer
from tests.adversarial.faults import fault_forced_text
from tests.support.live_server import live_server, sse_events

QUESTION = "Which radio frequency does the European mast use?"
NOWHERE = {"path": "nowhere/*"}  # matches no indexed file: retrieval says so in a notice
NO_MATCH = "no indexed file matches the filters"
CYCLE = "\nQu"


@pytest.mark.slow
def test_concurrent_retrievals_and_answers_keep_their_own_notices(built_sample: Path) -> None:
    ix = Indexer.from_config(built_sample)
    failures: list[str] = []
    generating = threading.Event()

    def answers() -> None:
        try:
            for _ in range(4):
                stream = ix.stream(QUESTION, top_k=2, max_tokens=24)
                generating.set()
                for _ in stream:
                    pass
                if stream.notice and NO_MATCH in stream.notice:
                    failures.append(f"the answer got a retrieval's notice: {stream.notice}")
                filtered = ix.query(QUESTION, filters=NOWHERE, max_tokens=4)
                if not filtered.notice or NO_MATCH not in filtered.notice:
                    failures.append(f"the filtered answer lost its notice: {filtered.notice}")
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(repr(exc))
        finally:
            generating.set()

    def retrievals(filtered: bool) -> None:
        generating.wait(60)
        try:
            for _ in range(30):
                found = ix.retrieve(QUESTION, top_k=2, filters=NOWHERE if filtered else None)
                if filtered and (found != [] or not found.notice or NO_MATCH not in found.notice):
                    failures.append(f"a filtered retrieval lost its notice: {found.notice}")
                if not filtered and (len(found) != 2 or found.notice is not None):
                    failures.append(f"a plain retrieval got another's notice: {found.notice}")
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(repr(exc))

    threads = [threading.Thread(target=answers)]
    threads += [threading.Thread(target=retrievals, args=(f,)) for f in (True, False, True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not any(t.is_alive() for t in threads)
    assert failures == []


@pytest.fixture
def newline_server(built_sample: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """A server whose model writes "Qu" on line after line: each line arrives as one piece (a line
    start that could still become "Question:" is held back), so pieces and tokens differ."""
    from indexer.server import create_app

    fault_forced_text(monkeypatch, CYCLE)
    ix = Indexer.from_config(built_sample, {"llm.max_new_tokens": 64})
    with live_server(create_app(ix)) as url:
        yield url


def test_usage_and_max_tokens_count_the_models_tokens(newline_server: str) -> None:
    body = {"model": "indexer-test", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 7}
    with httpx.Client(base_url=newline_server, timeout=120) as http:
        whole = http.post("/v1/chat/completions", json=body).json()
        assert whole["choices"][0]["finish_reason"] == "length"
        text = whole["choices"][0]["message"]["content"]
        assert text and (CYCLE * 7).startswith(text)
        assert whole["usage"]["completion_tokens"] == 7 and whole["usage"]["prompt_tokens"] > 0
        assert whole["usage"]["total_tokens"] == whole["usage"]["prompt_tokens"] + 7

        streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
        with http.stream("POST", "/v1/chat/completions", json=streamed) as response:
            chunks = [json.loads(data) for _, data in sse_events(response) if data != "[DONE]"]
        pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
        assert "".join(p or "" for p in pieces) == text
        assert len([p for p in pieces if p]) < 7  # the pieces are not the tokens
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
        assert chunks[-1]["usage"]["completion_tokens"] == 7

        capped = http.post("/v1/chat/completions", json={**body, "max_tokens": 1000}).json()
        assert capped["usage"]["completion_tokens"] == 64  # llm.max_new_tokens still caps
