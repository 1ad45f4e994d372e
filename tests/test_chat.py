"""`indexer chat` and multi-turn questions: follow-ups condensed with the history before retrieval."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from indexer import Indexer
from indexer.query.engine import QueryEngine
from tests.conftest import ROOT

FIRST = "How often should the silica gel desiccant pack in the mast be replaced?"


def _chat(config: Path, lines: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "indexer", "chat", str(config), *args],
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
        timeout=300,
    )


@pytest.mark.slow
def test_chat_session_in_the_terminal(built_sample: Path) -> None:
    result = _chat(
        built_sample,
        [FIRST, "", "And what colour does it turn?", "/sources", "/bogus", "/reset", "/sources", "/exit",
         "never read"],
        "--set", "llm.max_new_tokens=8", "-k", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Traceback" not in result.stderr
    assert out.startswith("Chatting with") and "/sources, /reset, /exit" in out
    before_bogus = out[: out.index("unknown command /bogus")]
    listed = before_bogus[before_bogus.rindex("Sources:") :]  # what /sources printed
    assert "[1] " in listed and "[2] " in listed and "[3] " not in listed
    after_reset = out[out.index("(conversation forgotten)") :]
    assert "No matching passages." in after_reset and "Sources:" not in after_reset


@pytest.mark.slow
def test_chat_ends_at_end_of_input_and_works_without_a_model(built_sample: Path) -> None:
    result = _chat(built_sample, [FIRST], "--set", "llm.provider=none")
    assert result.returncode == 0, result.stderr
    assert "Sources:" in result.stdout and "maintenance" in result.stdout


def test_follow_ups_are_condensed_with_the_history_before_retrieval(built_sample: Path) -> None:
    # Without a model the condensed question is the last question plus the follow-up: exact.
    ix = Indexer.from_config(built_sample, {"llm.provider": "none"})
    session = ix.chat(top_k=3)
    first = session.ask(FIRST)
    session.remember(FIRST, first)
    follow = session.ask("And how often is that?")
    assert follow.question == f"{FIRST} And how often is that?"
    assert follow.sources[0].file == "guides/maintenance.txt" == first.sources[0].file
    alone = ix.retrieve("And how often is that?", top_k=3)
    assert [s.chunk_id for s in alone] != [s.chunk_id for s in follow.sources]
    session.reset()
    assert (
        session.history == [] and session.ask("And how often is that?").question == "And how often is that?"
    )


def test_the_model_condenses_with_the_history_within_its_window(built_sample: Path) -> None:
    ix = Indexer.from_config(built_sample, {"llm.n_ctx": 1024, "llm.max_new_tokens": 16})
    engine = QueryEngine(ix.components, ix.index)
    history = [
        ("user", "OLD-TURN " * 300),
        ("assistant", "noise"),
        ("user", FIRST),
        ("assistant", "[1] yearly"),
    ]
    standalone = engine.condense("And the connector?", history)
    assert isinstance(standalone, str) and standalone.strip() and "\n" not in standalone
    prompt = ix.components.llm.last_prompt
    assert (
        FIRST in prompt.text and "And the connector?" in prompt.text and "Follow-up question" in prompt.text
    )
    assert "OLD-TURN" not in prompt.text  # the oldest turn left to fit the window
    assert len(prompt.tokens) <= 1024 - 96
    # The answer after it goes through the condensed question.
    answer = ix.query("And the connector?", top_k=1, history=history[2:])
    assert answer.question and "\n" not in answer.question and len(answer.sources) == 1
