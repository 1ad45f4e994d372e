"""Config loading: layering, overrides, interpolation, path resolution and every error."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.config import load_config, parse_set_options
from indexer.errors import ConfigError

BASE = """
data: {input_dir: docs}
vector_store: {persist_dir: store, collection: base}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_and_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "cfg" / "a.yaml", BASE))
    assert config.data.input_dir == tmp_path / "cfg" / "docs"
    assert config.vector_store.persist_dir == tmp_path / "cfg" / "store"
    assert config.data.required_exts is None  # every file; unsupported types are skipped and listed
    assert (config.chunking.chunk_size, config.chunking.chunk_overlap) == (256, 32)
    assert config.embedding.model == "default" and config.embedding.batch_size == 64
    assert config.llm.provider == "llama_cpp" and config.query.top_k == 4


def test_extends_merges_sections_and_keeps_base_paths_relative_to_the_base(tmp_path: Path) -> None:
    write(tmp_path / "base" / "base.yaml", BASE + "chunking: {chunk_size: 128, chunk_overlap: 16}\n")
    child = write(
        tmp_path / "child" / "child.yaml",
        "extends: ../base/base.yaml\nchunking: {chunk_size: 512}\nquery: {top_k: 7}\n",
    )
    config = load_config(child)
    assert config.data.input_dir == tmp_path / "base" / "docs"
    assert config.chunking.chunk_size == 512 and config.chunking.chunk_overlap == 16
    assert config.query.top_k == 7


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "extends: b.yaml\n" + BASE)
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_set_overrides_parse_yaml_scalars_and_paths_resolve_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "cfg" / "a.yaml", BASE)
    config = load_config(
        path, ["query.top_k=9", "embedding.normalize=false", "data.input_dir=other", "llm.temperature=0.5"]
    )
    assert config.query.top_k == 9
    assert config.embedding.normalize is False
    assert config.llm.temperature == 0.5
    assert config.data.input_dir == tmp_path / "other"
    assert load_config(path, {"query.top_k": 3}).query.top_k == 3


def test_env_interpolation_with_default_and_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDX_TOPK", "11")
    monkeypatch.delenv("IDX_UNSET", raising=False)
    path = write(
        tmp_path / "a.yaml",
        BASE + "query: {top_k: '${IDX_TOPK}'}\nllm: {model_path: '${IDX_UNSET:models/m.gguf}'}\n",
    )
    config = load_config(path)
    assert config.query.top_k == 11
    assert config.llm.model_path == tmp_path / "models" / "m.gguf"


def test_missing_env_variable_without_default_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IDX_NOPE", raising=False)
    path = write(tmp_path / "a.yaml", BASE + "llm: {model_path: '${IDX_NOPE}'}\n")
    with pytest.raises(ConfigError, match=r"IDX_NOPE is not set") as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "data:\n  input_dir: docs\n  recursive: [true\nchunking: {}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and "malformed YAML" in message and "line " in message


def test_unknown_key_names_file_field_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yaml", BASE + "chunking: {chunk_sise: 100}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message
    assert "chunking.chunk_sise" in message and "did you mean 'chunk_size'" in message


def test_mistyped_value_names_field_and_value(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yaml", BASE + "query: {top_k: many}\n")
    with pytest.raises(ConfigError, match=r"query\.top_k.*'many'"):
        load_config(path)


def test_error_from_set_names_the_override(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yaml", BASE)
    with pytest.raises(ConfigError, match=r"--set chunking\.chunk_overlap"):
        load_config(path, ["chunking.chunk_overlap=999"])


def test_bad_set_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set_options(["query.top_k"])


@pytest.mark.parametrize("name", ["a", "bad name", "-leading", "1.2.3.4", "has..dots"])
def test_collection_name_that_chroma_rejects_reports_the_rule(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / "a.yaml", BASE)
    with pytest.raises(ConfigError, match=r"vector_store\.collection.*3-512 characters"):
        load_config(path, {"vector_store.collection": name})


def test_exactly_one_store_location(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yaml", "data: {input_dir: docs}\nvector_store: {collection: abc}\n")
    with pytest.raises(ConfigError, match="exactly one of persist_dir"):
        load_config(path)


def test_missing_required_section_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yaml", "vector_store: {persist_dir: s}\n")
    with pytest.raises(ConfigError, match=r"data: required key is missing"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_qa_prompt_needs_placeholders(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yaml", BASE + "query: {qa_prompt: 'Answer: {question}'}\n")
    with pytest.raises(ConfigError, match=r"must contain \{context\}"):
        load_config(path)
