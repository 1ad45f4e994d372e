"""Issue 30, item 6: a YAML alias bomb ("billion laughs") is refused at once, naming the file,
while anchors, aliases and merge keys of a real size still load, as do ``extends`` and the
configs the project ships."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from indexer.config import load_config
from indexer.errors import ConfigError
from tests.adversarial.helpers import assert_one_paragraph_error, cli
from tests.conftest import ROOT


def _bomb(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels):
        prev, name = chr(ord("a") + n - 1), chr(ord("a") + n)
        lines.append(f"{name}: &{name} [{','.join(f'*{prev}' for _ in range(9))}]")
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_config_is_refused_in_well_under_a_second(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb())
    assert len(path.read_text().splitlines()) <= 10
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert time.monotonic() - started < 0.5
    message = str(caught.value)
    assert str(path) in message and "aliases" in message and "\n" not in message

    started = time.monotonic()
    result = cli("config", str(path))
    assert time.monotonic() - started < 1.0
    assert_one_paragraph_error(result, str(path), "aliases")


def test_a_bomb_inside_a_base_config_is_refused_through_extends(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(_bomb())
    top = tmp_path / "top.yaml"
    top.write_text("extends: base.yaml\nquery: {top_k: 3}\n")
    with pytest.raises(ConfigError, match=r"base.yaml.*aliases"):
        load_config(top)


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("data: &d {input_dir: docs, exclude: [*d]}\nvector_store: {persist_dir: s}\n")
    with pytest.raises(ConfigError, match="recursive alias"):
        load_config(path)
    assert_one_paragraph_error(cli("config", str(path)), "recursive alias", str(path))


def test_deep_nesting_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("data: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)


def test_aliases_of_a_real_size_still_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R30_TOP_K", "7")
    base = tmp_path / "base.yaml"
    base.write_text(
        "data: {input_dir: docs, exclude: &ex ['*.tmp', '*.bak']}\n"
        "vector_store: {persist_dir: storage}\n"
        "chunking: &chunks {chunk_size: 128, chunk_overlap: 8}\n"
    )
    top = tmp_path / "top.yaml"
    top.write_text(
        "extends: base.yaml\n"
        "query: &q {top_k: '${R30_TOP_K}'}\n"
        "chunking: {<<: {chunk_size: 64, chunk_overlap: 4}, chunk_size: 96}\n"
    )
    config = load_config(top)
    assert config.query.top_k == 7
    assert (config.chunking.chunk_size, config.chunking.chunk_overlap) == (96, 4)
    assert config.data.input_dir == tmp_path / "docs"


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_the_shipped_configs_and_eval_specs_still_load(name: str) -> None:
    from indexer.eval.spec import is_spec_file, load_spec

    path = ROOT / "configs" / name
    if is_spec_file(path):
        load_spec(path)
    else:
        load_config(path)


def test_an_eval_spec_is_bounded_too(tmp_path: Path) -> None:
    from indexer.eval.spec import load_spec

    path = tmp_path / "spec.yaml"
    path.write_text(_bomb())
    started = time.monotonic()
    with pytest.raises(ConfigError, match="aliases"):
        load_spec(path)
    assert time.monotonic() - started < 0.5
