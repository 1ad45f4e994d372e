"""Runaways stop (issue 27, item 5): generation ends where the model invents the next turn of a
conversation or loops, the answer says why in its notice, and a stopped turn is never shown, in
any way in (Python, CLI, HTTP events, OpenAI streaming)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer import Indexer
from indexer.query.runaway import RunawayGuard, invented_turn, repeated_block, turn_labels
from tests.adversarial.faults import fault_forced_text
from tests.adversarial.helpers import cli, small_config, write_docs
from tests.support.live_server import live_server, sse_events

QUESTION = "Which radio frequency does the European mast use?"


def guarded(pieces: list[str], labels: tuple[str, ...] | None = None) -> tuple[str, str | None]:
    """What a reader is shown of ``pieces``, and why the answer was stopped."""
    guard = RunawayGuard(labels) if labels else RunawayGuard()
    shown = ""
    for piece in pieces:
        shown += guard.feed(piece)
        if guard.reason:
            return shown, guard.reason
    return shown + guard.finish(), None


# -- the detector, on hand-made text ------------------------------------------------------------


@pytest.mark.parametrize(
    "label", ["Question:", "Q:", "User:", "Human:", "Assistant:", "user:", "## ", "### "]
)
def test_an_invented_turn_is_cut_before_its_line(label: str) -> None:
    answer = "The mast transmits on 868 MHz [1]."
    pieces = [answer, "\n", "\n", label[:2], label[2:], " And what about the battery?", "\nIt is..."]
    shown, reason = guarded(pieces)
    assert shown.rstrip() == answer and label.strip() not in shown
    assert reason is not None and repr(label.strip()) in reason


def test_a_turn_at_the_very_start_leaves_no_answer() -> None:
    assert guarded(["User", ": tell me more"]) == (
        "",
        "stopped where the model began a turn of its own ('User:')",
    )


def test_ordinary_lines_are_not_turns() -> None:
    text = (
        "### Radio\nQuarterly checks: the mast [1].\nQuestions are answered below.\n"
        "Model: XR-200\nSystem: weather station\n  - Users: two\nusers: none\nThe end."
    )
    assert guarded([text[i : i + 3] for i in range(0, len(text), 3)]) == (text, None)
    assert invented_turn(text) is None


@pytest.mark.parametrize("heading", ["## ", "### "])
def test_a_heading_opening_the_answer_is_kept(heading: str) -> None:
    text = f"{heading}Radio\nThe mast transmits on 868 MHz [1].\n#### Details\n# not a heading"
    assert guarded([text[i : i + 2] for i in range(0, len(text), 2)]) == (text, None)


def test_the_templates_own_role_names_count_where_it_uses_them() -> None:
    gemma = "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}"
    assert "Model:" in turn_labels(gemma) and "Model:" not in turn_labels("<|im_start|>{{ m['role'] }}")
    shown, reason = guarded(["It is 868 MHz.\nModel: and more"], turn_labels(gemma))
    assert shown == "It is 868 MHz." and reason is not None and "'Model:'" in reason


def test_a_line_start_is_held_back_only_while_it_could_become_a_turn() -> None:
    guard = RunawayGuard()
    assert guard.feed("Fine.\n") == "Fine."
    assert guard.feed("Qu") == ""  # could still become "Question:"
    assert guard.feed("arterly") == "\nQuarterly"
    assert guard.finish() == ""


@pytest.mark.parametrize(
    "loop",
    [
        "2024-03-20, " * 8,
        "2024-03-20\n" * 8,
        "the the " * 20,
        "The mast is tall. " * 8,
        "!" * 3 + " ok" * 40,
    ],
)
def test_a_loop_stops_the_answer(loop: str) -> None:
    shown, reason = guarded(["Dates: ", *[loop[i : i + 4] for i in range(0, len(loop), 4)], "more"])
    assert reason is not None and reason.startswith("stopped a loop") and not shown.endswith("more")


@pytest.mark.parametrize(
    "text",
    [
        "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20",
        "| a | b | c |\n| --- | --- | --- |\n| 1 | 2 | 3 |\n| 4 | 5 | 6 |",
        "No, no, no. It is 868 MHz.",
        "The mast is tall. The mast is tall. The mast is tall.",
    ],
)
def test_lists_tables_and_emphasis_are_not_loops(text: str) -> None:
    assert repeated_block(text) is None
    assert guarded([text]) == (text, None)


# -- every way in, on the real tiny model steered by a fault ----------------------------------


@pytest.fixture
def turn_inventing(built_sample: Path, monkeypatch: pytest.MonkeyPatch) -> Indexer:
    """The model answers, then writes the user's next question."""
    fault_forced_text(monkeypatch, "It is 868 MHz.\nQuestion: and the battery?\n")
    return Indexer.from_config(built_sample, {"llm.max_new_tokens": 200})


def test_python_stops_at_an_invented_turn(turn_inventing: Indexer) -> None:
    stream = turn_inventing.stream(QUESTION, top_k=2)
    shown = "".join(stream)
    assert shown == stream.answer == "It is 868 MHz."
    assert stream.notice is not None and "'Question:'" in stream.notice
    assert stream.finish_reason == "stop" and stream.usage is not None
    assert stream.usage.completion_tokens < 40  # stopped there, not at max_new_tokens (200)
    answer = turn_inventing.query(QUESTION, top_k=2)
    assert answer.answer == "It is 868 MHz." and "'Question:'" in (answer.notice or "")


def test_cli_stops_at_an_invented_turn(turn_inventing: Indexer, built_sample: Path) -> None:
    result = cli("query", str(built_sample), QUESTION, "--set", "llm.max_new_tokens=200")
    assert result.returncode == 0, result.stderr
    assert "It is 868 MHz." in result.stdout and "Question:" not in result.stdout
    assert "note: stopped where the model began a turn of its own ('Question:')" in result.stderr


@pytest.fixture
def looping_server(built_sample: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from indexer.server import create_app

    fault_forced_text(monkeypatch, "2024-03-20, ")
    with live_server(create_app(Indexer.from_config(built_sample, {"llm.max_new_tokens": 400}))) as url:
        yield url


def test_http_events_stop_a_loop(looping_server: str) -> None:
    body = {"question": QUESTION, "top_k": 2, "stream": True}
    with (
        httpx.Client(base_url=looping_server, timeout=120) as http,
        http.stream("POST", "/v1/query", json=body) as response,
    ):
        events = [(kind, json.loads(data)) for kind, data in sse_events(response)]
    text = "".join(data["text"] for kind, data in events if kind == "token")
    (done,) = [data for kind, data in events if kind == "done"]
    assert done["answer"] == text and 4 <= text.count("2024-03-20") <= 12
    assert done["notice"].startswith("stopped a loop") and done["finish_reason"] == "stop"


def test_openai_streaming_stops_at_a_loop_and_counts_its_tokens(looping_server: str) -> None:
    body = {
        "model": "indexer-test",
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with (
        httpx.Client(base_url=looping_server, timeout=120) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        chunks = [json.loads(data) for _, data in sse_events(response) if data != "[DONE]"]
    final = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]][-1]
    assert final["choices"][0]["finish_reason"] == "stop" and final["notice"].startswith("stopped a loop")
    assert chunks[-1]["usage"]["completion_tokens"] < 100  # of llm.max_new_tokens 400


# -- SmolLM2 -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_index(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Indexer:
    root = tmp_path_factory.mktemp("runaway")
    docs = write_docs(
        root / "docs",
        {
            "log.txt": "Calibration dates: " + "2024-03-20, " * 5 + "2024-03-20.\n",
            "radio.md": "# Radio\n\nThe European mast transmits on 868 MHz, one percent duty cycle.\n",
        },
    )
    llm = {"model_path": str(smollm2_gguf), "max_new_tokens": 300, "temperature": 0.0}
    # These ask for a runaway, not about the documents: never answered "not in your documents".
    ix = Indexer.from_config(small_config(root / "ix", docs, llm=llm, query={"abstain": False}))
    ix.build()
    return ix


@pytest.mark.slow
def test_smollm2_stops_a_date_loop(smollm2_index: Indexer) -> None:
    """Greedy SmolLM2 writes the date over and over until stopped (at max_new_tokens before)."""
    answer = smollm2_index.query("Write the date 2024-03-20 fifty times, separated by commas.")
    assert answer.notice is not None and answer.notice.startswith("stopped a loop"), answer
    assert answer.usage is not None and answer.usage.completion_tokens < 150  # of 300
    assert answer.finish_reason == "stop" and (answer.answer or "").count("2024-03-20") < 15


@pytest.mark.slow
def test_smollm2_stops_at_an_invented_turn(smollm2_index: Indexer) -> None:
    answer = smollm2_index.query("Write a dialogue between a User and an Assistant about the radio.")
    assert answer.notice is not None and "began a turn of its own" in answer.notice, answer
    assert "User:" not in (answer.answer or "") and answer.usage is not None
    assert answer.usage.completion_tokens < 50


@pytest.mark.slow
def test_smollm2_steered_into_a_loop_stops_in_every_stream(
    smollm2_index: Indexer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same stop when the loop is certain (a fault steers sampling): streamed and whole."""
    fault_forced_text(monkeypatch, "The mast transmits on 868 MHz. ")
    stream = smollm2_index.stream(QUESTION, top_k=1)
    shown = "".join(stream)
    assert shown == stream.answer and 4 <= shown.count("868 MHz") <= 10
    assert stream.notice is not None and stream.notice.startswith("stopped a loop")
    assert stream.usage is not None and stream.usage.completion_tokens < 100  # of 300
