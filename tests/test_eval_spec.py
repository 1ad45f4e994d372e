"""Eval specs: variants from a grid and a list, paths relative to the spec, and errors that name
the problem before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from indexer.errors import ConfigError
from indexer.eval.session import make_spec
from indexer.eval.spec import expand_variants, is_spec_file, load_spec
from tests.conftest import SAMPLE_DIR, SAMPLE_QUESTIONS, write_config


def write_spec(folder: Path, **fields: object) -> Path:
    write_config(folder, SAMPLE_DIR)
    spec = {"config": "config.yaml", "datasets": [str(SAMPLE_QUESTIONS)], **fields}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_grid_times_named_variants(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        grid={"chunking.chunk_size": [128, 256], "query.top_k": [3]},
        variants=[{"name": "cold", "set": {"llm.temperature": 0}}, {"set": {"llm.top_p": 0.5}}],
        set={"query.top_k": 9, "llm.seed": 7},
    )
    assert is_spec_file(path) and not is_spec_file(tmp_path / "config.yaml")
    variants = expand_variants(load_spec(path))
    assert [v.name for v in variants] == [
        "cold chunk_size=128,top_k=3",
        "cold chunk_size=256,top_k=3",
        "top_p=0.5 chunk_size=128,top_k=3",
        "top_p=0.5 chunk_size=256,top_k=3",
    ]
    # The grid wins over the spec-wide set; the spec-wide set reaches every variant.
    assert variants[0].overrides == {
        "query.top_k": 3,
        "llm.seed": 7,
        "llm.temperature": 0,
        "chunking.chunk_size": 128,
    }


def test_paths_in_a_spec_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    path = write_spec(tmp_path, set={"data.input_dir": "other"}, index_cache="cache")
    spec = load_spec(path)
    assert spec.config == tmp_path / "config.yaml"
    assert spec.set["data.input_dir"] == str(tmp_path / "other")
    assert spec.index_cache == tmp_path / "cache"


def test_a_bundled_model_in_a_spec_is_no_path(tmp_path: Path) -> None:
    # As in a config: bundled:NAME names a model a package ships (configs/eval-answers.yaml).
    path = write_spec(
        tmp_path,
        grid={"llm.model_path": ["bundled:smollm2", "model.gguf"]},
        variants=[{"name": "gemma", "set": {"llm.model_path": "bundled:gemma3-270m"}}],
    )
    spec = load_spec(path)
    assert spec.grid["llm.model_path"] == ["bundled:smollm2", str(tmp_path / "model.gguf")]
    assert spec.variants[0].set["llm.model_path"] == "bundled:gemma3-270m"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"metrics": ["ndcg"]}, r"metrics: unknown metric 'ndcg'"),
        ({"grid": {"query.top_k": []}}, r"grid: query\.top_k: list at least one value"),
        ({"gird": {}}, r"gird: unknown key; allowed: config, datasets"),
        ({"grid": {"query.top_k": [0]}}, r"(?s)variant 'top_k=0': .*query\.top_k"),
        ({"grid": {"retrieval.mod": ["bm25"]}}, r"(?s)variant 'mod=bm25': .*unknown key 'mod'"),
        ({"variants": [{"name": "a"}, {"name": "a"}]}, r"variant names repeat \(a\)"),
    ],
)
def test_a_bad_spec_is_a_clear_error(tmp_path: Path, fields: dict[str, object], message: str) -> None:
    path = write_spec(tmp_path, **fields)
    with pytest.raises(ConfigError, match=message):
        expand_variants(load_spec(path))


def test_options_and_targets(tmp_path: Path) -> None:
    path = write_spec(tmp_path, fail_under={"ndcg@10": 0.5})
    spec = make_spec(path, overrides={"query.top_k": 2}, limit=3, fail_under={"mrr@10": 0.4}, judge=True)
    assert spec.set == {"query.top_k": 2} and spec.judge and spec.datasets[0].limit == 3
    assert spec.fail_under == {"ndcg@10": 0.5, "mrr@10": 0.4}
    with pytest.raises(ConfigError, match="is an eval spec: list its datasets there"):
        make_spec(path, datasets=[SAMPLE_QUESTIONS])
    with pytest.raises(ConfigError, match="is a config: name the questions to evaluate with --dataset"):
        make_spec(tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match="the command line: invalid eval spec:\n  metrics"):
        make_spec(tmp_path / "config.yaml", datasets=[SAMPLE_QUESTIONS], metrics=["bleu"])
