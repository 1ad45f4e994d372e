"""LlamaIndex components named in the config (issue 26, items 3 and 5): a LlamaIndex LLM class
through ``llm.provider: llama_index`` (``MockLLM``), a reader per extension through ``data.readers``
(``FlatReader``, and a user's own), and ``query.postprocessors`` (a user's own from a temporary
module, and LlamaIndex's built-in ones), used as a LlamaIndex user would."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from indexer import Indexer
from tests.adversarial.helpers import DOCS, cli, small_config, write_docs

pytestmark = pytest.mark.slow  # every test here reads an index built with the bundled MiniLM

MOCK_LLM = "llama_index.core.llms.MockLLM"
FLAT_READER = "llama_index.readers.file.FlatReader"
LOG_TEXT = "2026-01-04 09:12 WARN anemometer cup bearing noise above threshold on mast seven\n"
QUESTION = "anemometer cup bearing noise"

USER_MODULE = '''
from pathlib import Path

from llama_index.core.llms import CustomLLM, LLMMetadata
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import Document


class DropFile(BaseNodePostprocessor):
    """Drops the passages of one file; reverses the order of the rest if asked."""

    file: str
    reverse: bool = False

    def _postprocess_nodes(self, nodes, query_bundle=None):
        kept = [n for n in nodes if n.node.metadata.get("file") != self.file]
        return kept[::-1] if self.reverse else kept


class Rescore(BaseNodePostprocessor):
    """Gives every passage a score of its own (as a reranker does)."""

    def _postprocess_nodes(self, nodes, query_bundle=None):
        for n, node in enumerate(nodes):
            node.score = 10.0 - n
        return nodes


class NeedsKey(BaseNodePostprocessor):
    """Refuses its key, quoting it, as a careless client library might."""

    api_key: str

    def model_post_init(self, context):
        raise ValueError(f"key {self.api_key} was refused by the server")

    def _postprocess_nodes(self, nodes, query_bundle=None):
        return nodes


class DownLLM(CustomLLM):
    """An LLM of the user's own whose server is down; its error quotes the key."""

    api_key: str = ""

    @property
    def metadata(self):
        return LLMMetadata()

    def complete(self, prompt, formatted=False, **kwargs):
        raise ConnectionError(f"connection refused for key {self.api_key}")

    def stream_complete(self, prompt, formatted=False, **kwargs):
        raise ConnectionError(f"connection refused for key {self.api_key}")


class PickyReader(BaseReader):
    """Reads a log file in upper case; fails on one that says BROKEN."""

    def load_data(self, file, extra_info=None):
        text = Path(file).read_text(encoding="utf-8")
        if "BROKEN" in text:
            raise ValueError("this log cannot be parsed")
        return [Document(text=text.upper())]
'''


@pytest.fixture(scope="module")
def user_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A module of the user's own, importable as ``my_plugins`` (its folder on sys.path, as
    PYTHONPATH would put it)."""
    folder = tmp_path_factory.mktemp("user_module")
    (folder / "my_plugins.py").write_text(textwrap.dedent(USER_MODULE), encoding="utf-8")
    sys.path.insert(0, str(folder))
    try:
        yield "my_plugins"
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("my_plugins", None)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small documents and a .log file read by FlatReader, indexed once; answers by MockLLM."""
    folder = tmp_path_factory.mktemp("plugins")
    docs = write_docs(folder / "docs", {**DOCS, "logs/mast7.log": LOG_TEXT})
    config = small_config(
        folder,
        docs,
        data={"readers": {".log": {"class": FLAT_READER}}},
        llm={"provider": "llama_index", "class": MOCK_LLM, "kwargs": {"max_tokens": 5}},
    )
    Indexer.from_config(config).build()
    return config


def test_mock_llm_answers_through_the_engine(built: Path) -> None:
    answer = Indexer.from_config(built).query(QUESTION, top_k=2)
    assert answer.answer == "text text text text text"  # MockLLM's reply with max_tokens 5
    assert answer.finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == 5
    assert answer.usage.prompt_tokens > 0
    assert [s.rank for s in answer.sources] == [1, 2]


def test_the_api_hands_out_the_configured_llama_index_llm_itself(built: Path) -> None:
    from llama_index.core.llms import MockLLM

    assert isinstance(Indexer.from_config(built).llm, MockLLM)


def test_mock_llm_answers_through_the_cli_json(built: Path) -> None:
    result = cli("query", str(built), QUESTION, "--top-k", "2", "--json")
    assert result.returncode == 0, result.stderr
    data = result.json()
    assert data["answer"] == "text text text text text"
    assert len(data["sources"]) == 2


def test_max_tokens_and_stop_strings_are_honoured(built: Path) -> None:
    # MockLLM without max_tokens echoes its prompt one character a piece: only the cap ends it.
    llm = {"llm.kwargs": {}, "llm.max_new_tokens": 12}
    capped = Indexer.from_config(built, llm).query(QUESTION)
    assert capped.finish_reason == "length"
    assert capped.usage is not None and capped.usage.completion_tokens == 12
    assert capped.answer is not None and len(capped.answer) == 12
    # The prompt starts with the system prompt: a stop string inside it ends the answer before it.
    stopped = Indexer.from_config(built, {**llm, "llm.max_new_tokens": 400, "llm.stop": ["careful"]})
    answer = stopped.query(QUESTION)
    assert answer.finish_reason == "stop"
    assert answer.answer and "careful" not in answer.answer and "assistant" not in answer.answer


def test_judge_and_json_replies_go_through_the_llm(built: Path) -> None:
    from indexer.eval.judge import judge_relevancy

    llm = Indexer.from_config(built).components.llm
    assert llm is not None
    verdict = judge_relevancy(llm, QUESTION, "an answer")
    # MockLLM writes no JSON: a per-item error, never a score.
    assert verdict.score is None and verdict.error


def test_flat_reader_reads_the_configured_extension(built: Path) -> None:
    ix = Indexer.from_config(built)
    passages = ix.retrieve(QUESTION, top_k=1)
    assert passages[0].file == "logs/mast7.log"
    assert passages[0].text.strip() == LOG_TEXT.strip()
    manifest = json.loads((built.parent / "storage" / "indexer-manifest.json").read_text())
    assert manifest["loader"]["readers"] == {".log": {"class": FLAT_READER, "kwargs": {}}}
    assert "logs/mast7.log" in manifest["files"]


def test_reader_change_rereads_only_its_files_and_a_failing_file_is_skipped(
    tmp_path: Path, user_module: str
) -> None:
    docs = write_docs(tmp_path / "docs", {**DOCS, "a.log": LOG_TEXT, "b.log": "BROKEN line\n"})
    config = small_config(tmp_path, docs)
    first = Indexer.from_config(config).build()
    assert {s["file"] for s in first.skipped} == {"a.log", "b.log"}  # no reader for .log yet

    data = yaml.safe_load(config.read_text())
    data["data"]["readers"] = {"log": {"class": f"{user_module}.PickyReader"}}  # 'log' is '.log'
    config.write_text(yaml.safe_dump(data))
    second = Indexer.from_config(config).build()
    assert second.changes["added"] == ["a.log"]  # read now; the other documents untouched
    assert second.unchanged == len(DOCS)
    [skip] = second.skipped
    assert skip["file"] == "b.log" and "ValueError" in skip["reason"]
    ix = Indexer.from_config(config)
    assert ix.retrieve(QUESTION, top_k=1)[0].text.strip() == LOG_TEXT.strip().upper()

    data["data"]["readers"] = {".log": {"class": FLAT_READER}}  # another reader: .log files again
    config.write_text(yaml.safe_dump(data))
    third = Indexer.from_config(config).build()
    assert third.changes["updated"] == ["a.log"] and third.unchanged == len(DOCS)
    assert Indexer.from_config(config).retrieve(QUESTION, top_k=1)[0].text.strip() == LOG_TEXT.strip()


def _postprocessors(*specs: dict[str, Any]) -> dict[str, Any]:
    return {"query.postprocessors": list(specs)}


def test_user_postprocessor_drops_and_reorders(built: Path, user_module: str) -> None:
    plain = Indexer.from_config(built).retrieve(QUESTION, top_k=4)
    files = [p.file for p in plain]
    assert "logs/mast7.log" in files
    drop = {"class": f"{user_module}.DropFile", "kwargs": {"file": "logs/mast7.log", "reverse": True}}
    processed = Indexer.from_config(built, _postprocessors(drop)).retrieve(QUESTION, top_k=4)
    kept = [p for p in plain if p.file != "logs/mast7.log"][::-1]
    assert [p.chunk_id for p in processed] == [p.chunk_id for p in kept]
    assert [p.rank for p in processed] == list(range(1, len(kept) + 1))
    for after, before in zip(processed, kept, strict=True):  # ids, text, metadata and score kept
        assert (after.text, after.metadata, after.score) == (before.text, before.metadata, before.score)


def test_postprocessors_apply_in_order_and_keep_their_scores(built: Path, user_module: str) -> None:
    rescore = {"class": f"{user_module}.Rescore"}
    drop = {"class": f"{user_module}.DropFile", "kwargs": {"file": "logs/mast7.log"}}
    passages = Indexer.from_config(built, _postprocessors(rescore, drop)).retrieve(QUESTION, top_k=3)
    assert "logs/mast7.log" not in [p.file for p in passages]
    assert [p.score for p in passages] == [9.0, 8.0]  # rescored first (10, 9, 8), then 10 dropped
    assert all(p.scores["postprocess"] == p.score for p in passages)


def test_postprocessor_through_the_cli(built: Path, user_module: str) -> None:
    drop = json.dumps([{"class": f"{user_module}.DropFile", "kwargs": {"file": "logs/mast7.log"}}])
    result = cli(
        "query", str(built), QUESTION, "--retrieve-only", "--json", "--set", f"query.postprocessors={drop}"
    )
    assert result.returncode == 0, result.stderr
    files = [s["file"] for s in result.json()["sources"]]
    assert files and "logs/mast7.log" not in files


def test_llama_index_builtin_postprocessors(built: Path) -> None:
    cutoff = "llama_index.core.postprocessor.SimilarityPostprocessor"
    everything = Indexer.from_config(
        built, _postprocessors({"class": cutoff, "kwargs": {"similarity_cutoff": 2}})
    )
    assert list(everything.retrieve(QUESTION, top_k=3)) == []  # no score reaches 2
    replace = "llama_index.core.postprocessor.MetadataReplacementPostProcessor"
    named = Indexer.from_config(
        built, _postprocessors({"class": replace, "kwargs": {"target_metadata_key": "file"}})
    ).retrieve(QUESTION, top_k=2)
    assert [p.text for p in named] == [p.file for p in named]


def test_a_component_that_cannot_be_made_is_one_paragraph_without_its_secret(
    built: Path, user_module: str
) -> None:
    from tests.adversarial.helpers import assert_one_paragraph_error

    cutoff = "llama_index.core.postprocessor.SimilarityPostprocessor"
    bad = json.dumps([{"class": cutoff, "kwargs": {"similarity_cutoff": "high"}}])
    result = cli("query", str(built), QUESTION, "--retrieve-only", "--set", f"query.postprocessors={bad}")
    assert_one_paragraph_error(result, str(built), "query.postprocessors.0", cutoff, "similarity_cutoff")

    secret = json.dumps([{"class": f"{user_module}.NeedsKey", "kwargs": {"api_key": "sk-12345-secret"}}])
    result = cli("query", str(built), QUESTION, "--retrieve-only", "--set", f"query.postprocessors={secret}")
    assert_one_paragraph_error(result, str(built), "query.postprocessors.0", "NeedsKey", "***")
    assert "sk-12345" not in result.stderr + result.stdout


def test_mock_llm_answers_over_http(built: Path) -> None:
    import httpx

    from indexer.server import create_app
    from tests.support.live_server import live_server, sse_events

    with (
        live_server(create_app(Indexer.from_config(built))) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        response = http.post("/v1/query", json={"question": QUESTION, "top_k": 2})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["answer"] == "text text text text text" and len(body["sources"]) == 2
        # Streamed, and capped by the request's max_tokens below MockLLM's own five.
        payload = {"question": QUESTION, "top_k": 2, "max_tokens": 3, "stream": True}
        with http.stream("POST", "/v1/query", json=payload) as streamed:
            events = list(sse_events(streamed))
        done = json.loads(events[-1][1])
        assert [name for name, _ in events][-2:] == ["sources", "done"]
        assert done["answer"] == "text text text " and done["finish_reason"] == "length"


def test_an_llm_that_cannot_be_made_or_reached_is_one_paragraph(built: Path, user_module: str) -> None:
    from tests.adversarial.helpers import assert_one_paragraph_error

    result = cli("query", str(built), QUESTION, "--set", "llm.kwargs={max_tokens: many}")
    assert_one_paragraph_error(result, str(built), "llm.class", MOCK_LLM, "max_tokens")

    down = [f"llm.class={user_module}.DownLLM", "llm.kwargs={api_key: sk-6789-secret}"]
    result = cli("query", str(built), QUESTION, *(arg for pair in down for arg in ("--set", pair)))
    assert_one_paragraph_error(result, f"{user_module}.DownLLM", "llm.class", "ConnectionError", "***")
    assert "sk-6789" not in result.stderr + result.stdout
