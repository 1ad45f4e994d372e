"""Issue 30, item 10: ``--set`` values expand ``${VAR}`` exactly as config files do, and a key that
still reads as a variable reference is refused instead of being served as a guessable literal."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from indexer.config import load_config, parse_set_options
from indexer.errors import ConfigError
from tests.adversarial.helpers import assert_one_paragraph_error, cli, small_config, write_docs


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return small_config(tmp_path / "cfg", write_docs(tmp_path / "docs"))


def test_set_expands_variables_as_the_file_does(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R30_KEY", "s3cret-from-env")
    monkeypatch.setenv("R30_PORT", "8123")
    monkeypatch.delenv("R30_UNSET", raising=False)
    loaded = load_config(
        config,
        parse_set_options(
            [
                "server.api_key=${R30_KEY}",
                "server.port=${R30_PORT}",  # only a variable: takes the variable's YAML type
                "server.model_name=idx-${R30_UNSET:dev}",
            ]
        ),
    )
    assert loaded.server.api_key == "s3cret-from-env"
    assert loaded.server.port == 8123
    assert loaded.server.model_name == "idx-dev"

    # The same through the CLI, as the shell passes it (single quotes: no shell expansion).
    result = cli("config", str(config), "--set", "server.api_key=${R30_KEY}")
    assert result.returncode == 0, result.stderr
    assert "s3cret-from-env" in result.stdout and "${R30_KEY}" not in result.stdout


def test_an_unset_variable_in_set_names_the_option(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("R30_UNSET", raising=False)
    with pytest.raises(ConfigError, match=r"--set server.api_key: environment variable R30_UNSET"):
        load_config(config, parse_set_options(["server.api_key=${R30_UNSET}"]))
    result = cli("config", str(config), "--set", "server.api_key=${R30_UNSET}")
    assert_one_paragraph_error(result, "--set server.api_key", "R30_UNSET")


@pytest.mark.parametrize(
    "value",
    [
        "$R30_KEY",  # the shell's syntax, kept literal by single quotes
        "${R30 KEY}",  # not a variable name: never expanded
        "${R30_KEY",  # unclosed
        "prefix-${1X}",
    ],
)
def test_a_key_that_looks_unexpanded_is_refused(config: Path, value: str) -> None:
    for key in ("server.api_key", "llm.api_key"):
        result = cli("config", str(config), "--set", f"{key}={value}")
        assert_one_paragraph_error(result, key, "not expanded")
    file_config = config.parent / "literal.yaml"
    file_config.write_text(config.read_text() + f"server: {{api_key: '{value}'}}\n")
    with pytest.raises(ConfigError, match=r"server.api_key: looks like an environment variable"):
        load_config(file_config)


@pytest.mark.slow
def test_the_server_answers_to_the_expanded_key_only(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer import Indexer
    from indexer.server import create_app
    from tests.support.live_server import live_server

    monkeypatch.setenv("R30_KEY", "s3cret-from-env")
    Indexer.from_config(config).build()
    indexer = Indexer.from_config(config, parse_set_options(["server.api_key=${R30_KEY}"]))
    with live_server(create_app(indexer)) as url:
        body = {"question": "desiccant"}
        literal = httpx.post(f"{url}/v1/retrieve", json=body, headers={"Authorization": "Bearer ${R30_KEY}"})
        assert literal.status_code == 401
        real = httpx.post(
            f"{url}/v1/retrieve", json=body, headers={"Authorization": "Bearer s3cret-from-env"}, timeout=60
        )
        assert real.status_code == 200, real.text


@pytest.mark.parametrize("value", ["$ecret-key", "$2b$12$abcdef", "pa$$word"])
def test_a_key_with_a_dollar_sign_is_still_a_key(config: Path, value: str) -> None:
    assert load_config(config, {"server.api_key": value}).server.api_key == value
