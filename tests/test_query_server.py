"""The openai_like backend against a real ``python -m llama_cpp.server`` on loopback, serving the
tiny GGUF: answers, streaming, and clear, bounded errors when the server is down or hangs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer import Indexer
from indexer.errors import ModelError
from tests.support.live_server import free_port, llama_cpp_server

pytest.importorskip("llama_cpp.server.app", reason="needs the llama-cpp-python[server] packages")
pytest.importorskip("openai", reason="needs the indexer[openai] extra")

QUESTION = "What does error E-214 mean?"


@pytest.fixture(scope="module")
def llama_server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    with llama_cpp_server(tiny_gguf, "tiny", log, n_ctx=8192, threads=1) as base_url:
        yield base_url


def _server_indexer(config: Path, base_url: str, **overrides: object) -> Indexer:
    return Indexer.from_config(
        config,
        {
            "llm.provider": "openai_like",
            "llm.base_url": base_url,
            "llm.model": "tiny",
            "llm.max_new_tokens": 16,
            **overrides,
        },
    )


def test_answers_and_streams_through_the_server(built_sample: Path, llama_server: str) -> None:
    ix = _server_indexer(built_sample, llama_server)
    stream = ix.stream(QUESTION, top_k=2)
    assert len(stream.sources) == 2 and stream.answer == ""
    pieces = list(stream)
    assert len(pieces) > 1 and stream.finished and stream.answer == "".join(pieces)
    answer = ix.query(QUESTION, top_k=2)
    assert isinstance(answer.answer, str) and answer.answer and len(answer.sources) == 2
    assert ix.components.llm.exact_token_counts  # counted by the server's own tokenizer


def test_context_budgeting_uses_the_servers_tokenizer(built_sample: Path, llama_server: str) -> None:
    ix = _server_indexer(built_sample, llama_server, **{"llm.n_ctx": 2500, "llm.max_new_tokens": 40})
    answer = ix.query(QUESTION, top_k=4)
    assert 1 <= len(answer.sources) < 4 and "left out of the prompt" in answer.notice
    assert isinstance(answer.answer, str)


def test_a_server_that_is_down_is_a_clear_error_at_once(built_sample: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    ix = _server_indexer(built_sample, url, **{"llm.timeout": 5})
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"cannot reach the LLM server at .* \(llm\.base_url\)"):
        ix.query(QUESTION, top_k=1)
    assert time.monotonic() - started < 5


class _SilentServerFault:
    """Fault injection: a server that accepts connections and never answers (a hung process)."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.port = self.socket.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        self.socket.close()
        for conn in self.connections:
            conn.close()


@pytest.mark.slow
def test_a_hung_server_times_out_within_llm_timeout(built_sample: Path) -> None:
    fault = _SilentServerFault()
    try:
        ix = _server_indexer(built_sample, f"http://127.0.0.1:{fault.port}/v1", **{"llm.timeout": 1})
        started = time.monotonic()
        with pytest.raises(ModelError, match=r"did not answer within 1 s \(llm\.timeout\)"):
            ix.query(QUESTION, top_k=1)
        assert time.monotonic() - started < 15  # tokenize probes and the request, 1 s each
    finally:
        fault.close()


def test_openai_like_needs_base_url_and_model(built_sample: Path) -> None:
    from indexer.errors import ConfigError

    with pytest.raises(ConfigError, match="base_url"):
        Indexer.from_config(built_sample, {"llm.provider": "openai_like"})


def _server_config(folder: Path, base_url: str) -> Path:
    from tests.conftest import SAMPLE_DIR, write_config

    llm = {"provider": "openai_like", "base_url": base_url, "model": "tiny", "max_new_tokens": 16}
    return write_config(folder, SAMPLE_DIR, llm=llm, query={"top_k": 1})


@pytest.mark.slow
def test_eval_answers_and_judges_through_the_server(tmp_path: Path, llama_server: str) -> None:
    """Eval, its usage counts and the judge use only the ChatModel interface, so an openai_like
    LLM works as the in-process one does (this crashed with an AttributeError before)."""
    import json

    from indexer.eval.session import evaluate, make_spec
    from tests.conftest import SAMPLE_QUESTIONS

    spec = make_spec(_server_config(tmp_path, llama_server), datasets=[SAMPLE_QUESTIONS], limit=2, judge=True)
    outcome = evaluate(spec, out=tmp_path / "runs")
    (result,) = outcome.summary["results"]
    assert result["counts"]["answered"] == 2 and result["counts"]["answer_errors"] == 0
    assert result["latency"]["tokens"]["completion_mean"] > 0
    records = [json.loads(x) for x in (outcome.run_dir / "questions.jsonl").read_text().splitlines()]
    for record in records:
        assert record["tokens"]["prompt"] > 0 and record["tokens"]["completion"] > 0
        for name in ("faithfulness", "relevancy"):
            # The server constrains the reply to the verdict schema (response_format), so it parses.
            assert record["judge"][name]["verdict"] in ("yes", "partly", "no"), record["judge"][name]
    assert result["counts"]["judge"]["faithfulness"]["failed"] == 0


@pytest.mark.slow
def test_generate_drafts_questions_through_the_server(tmp_path: Path, llama_server: str) -> None:
    import json

    from tests.adversarial.helpers import cli

    out = tmp_path / "questions.jsonl"
    result = cli(
        "eval",
        "generate",
        str(_server_config(tmp_path, llama_server)),
        "--n",
        "2",
        "--out",
        str(out),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["written"] == 2, summary
    assert all(json.loads(line)["question"] for line in out.read_text().splitlines())
