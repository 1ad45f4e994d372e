"""Issue 26, item 3: a LlamaIndex component the config names by dotted path that cannot be had (no
such module, no such class, the wrong kind of class, kwargs it does not take) is a one-paragraph
error when the config loads, naming the file, the field, the path and what to install; secrets in
kwargs are never printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from indexer.config import load_config
from indexer.errors import ConfigError
from tests.adversarial.helpers import assert_one_paragraph_error, cli, small_config, write_docs


def _config(tmp_path: Path, **sections: Any) -> Path:
    return small_config(tmp_path, write_docs(tmp_path / "docs"), **sections)


@pytest.mark.parametrize(
    ("sections", "needles"),
    [
        pytest.param(
            {"llm": {"provider": "llama_index", "class": "llama_index.llms.ollama.Ollama"}},
            ["llm", "llama_index.llms.ollama.Ollama", "pip install llama-index-llms-ollama"],
            id="integration-not-installed",
        ),
        pytest.param(
            {"data": {"readers": {".log": {"class": "llama_index.readers.file.NoSuchReader"}}}},
            ["data.readers", "llama_index.readers.file.NoSuchReader", "has no 'NoSuchReader'"],
            id="no-such-class",
        ),
        pytest.param(
            {"query": {"postprocessors": [{"class": "llama_index.core.llms.MockLLM"}]}},
            ["query.postprocessors.0", "llama_index.core.llms.MockLLM", "BaseNodePostprocessor"],
            id="wrong-base-class",
        ),
        pytest.param(
            {
                "query": {
                    "postprocessors": [
                        {
                            "class": "llama_index.core.postprocessor.SimilarityPostprocessor",
                            "kwargs": {"cutoff": 0.5},
                        }
                    ]
                }
            },
            ["query.postprocessors.0", "SimilarityPostprocessor", "'cutoff'", "similarity_cutoff"],
            id="unknown-kwarg",
        ),
        pytest.param(
            {"llm": {"provider": "llama_index"}},
            ["llm", "needs llm.class"],
            id="no-class",
        ),
        pytest.param(
            {"data": {"readers": {".log": {"class": "no_such_package_here.Reader"}}}},
            ["data.readers", "no_such_package_here", "PYTHONPATH"],
            id="user-module-missing",
        ),
        pytest.param(
            {
                "data": {
                    "required_exts": [".txt"],
                    "readers": {".log": {"class": "llama_index.readers.file.FlatReader"}},
                }
            },
            ["data", ".log", "required_exts"],
            id="reader-for-an-excluded-extension",
        ),
        pytest.param(
            {"data": {"readers": {".log": {"class": "FlatReader"}}}},
            ["data.readers", "'FlatReader'", "package.module.ClassName"],
            id="not-a-dotted-path",
        ),
    ],
)
def test_a_component_that_cannot_be_had_is_a_config_error(
    tmp_path: Path, sections: dict[str, Any], needles: list[str]
) -> None:
    config = _config(tmp_path, **sections)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    for needle in [str(config), *needles]:
        assert needle in str(caught.value)
    assert_one_paragraph_error(cli("config", str(config)), str(config), *needles)


def test_a_mistyped_key_of_a_spec_names_the_allowed_ones(tmp_path: Path) -> None:
    config = _config(tmp_path, data={"readers": {".log": {"klass": "llama_index.readers.file.FlatReader"}}})
    assert_one_paragraph_error(cli("config", str(config)), "unknown key 'klass'", "allowed: class, kwargs")


def test_secret_kwargs_are_masked_when_the_config_is_shown(tmp_path: Path) -> None:
    flat = "llama_index.readers.file.FlatReader"  # takes any kwargs
    kwargs = {"api_key": "sk-VALUE-1", "auth_token": "tok-VALUE-2", "max_tokens": 7}
    config = _config(tmp_path, data={"readers": {".log": {"class": flat, "kwargs": kwargs}}})
    shown = cli("config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert "VALUE" not in shown.stdout
    reader = yaml.safe_load(shown.stdout)["data"]["readers"][".log"]
    assert reader == {"class": flat, "kwargs": {"api_key": "***", "auth_token": "***", "max_tokens": 7}}
    # What the index keeps of it is as masked (issue 26: never recorded).
    assert load_config(config).data.readers[".log"].record()["kwargs"]["api_key"] == "***"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("api_key", True),
        ("apiKey", True),
        ("key", True),
        ("hf_token", True),
        ("password", True),
        ("client_secret", True),
        ("aws_access_key_id", True),
        ("max_tokens", False),
        ("target_metadata_key", False),
        ("model", False),
        ("similarity_cutoff", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    from indexer.config.plugins import is_secret

    assert is_secret(name) is secret
