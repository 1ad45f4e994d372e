"""What an evaluation run does: a base config, datasets, metrics, and the variants to compare.

An eval spec file (YAML) holds the same things the ``indexer eval CONFIG --dataset ...`` options
give. Variants are ``--set``-style overrides of the base config: a ``grid`` (every combination of
the listed values) and/or a list of named ``variants``; the two multiply.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from indexer.config.loader import BoundedSafeLoader, _is_bundled, load_config, path_keys
from indexer.config.models import Config
from indexer.errors import ConfigError
from indexer.eval.metrics import DEFAULT_ANSWER, DEFAULT_RETRIEVAL, parse_metric


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Strict):
    path: Path = Field(description="BEIR folder, questions .jsonl, or LlamaIndex labelled RAG .json.")
    name: str | None = Field(None, description="Name in reports; default: the folder or file name.")
    queries: str | None = Field(None, description="BEIR: queries file inside the folder.")
    qrels: str | None = Field(None, description="BEIR: qrels file inside the folder.")
    limit: int | None = Field(None, gt=0, description="Evaluate only the first N questions.")


class VariantSpec(_Strict):
    name: str | None = Field(None, description="Name in reports; default: the overrides.")
    set: dict[str, Any] = Field(default_factory=dict, description="Dotted config keys -> values.")


class EvalSpec(_Strict):
    config: Path = Field(description="The base config every variant starts from.")
    datasets: list[DatasetSpec] = Field(min_length=1)
    metrics: list[str] | None = Field(
        None, description="Metric names (ndcg@10, f1, faithfulness, ...); default: the usual set."
    )
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="Key -> values; all combinations.")
    variants: list[VariantSpec] = Field(default_factory=list)
    set: dict[str, Any] = Field(default_factory=dict, description="Overrides applied to every variant.")
    answers: bool | None = Field(
        None, description="Generate answers (default: when the dataset has reference answers)."
    )
    judge: bool = Field(False, description="LLM-judged faithfulness and relevancy.")
    index_cache: Path | None = Field(
        None, description="Where dataset indexes are kept; default: eval-indexes beside the storage."
    )
    fail_under: dict[str, float] = Field(default_factory=dict, description="metric -> minimum.")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: list[str] | None) -> list[str] | None:
        if metrics is None:
            return None
        for metric in metrics:
            parse_metric(metric)
        return [m.strip().lower() for m in metrics]

    @field_validator("grid")
    @classmethod
    def _non_empty_lists(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            if not values:
                raise ValueError(f"{key}: list at least one value")
        return grid

    @field_validator("fail_under")
    @classmethod
    def _known_gates(cls, gates: dict[str, float]) -> dict[str, float]:
        for metric in gates:
            parse_metric(metric)
        return {k.strip().lower(): v for k, v in gates.items()}


class Variant(BaseModel):
    name: str
    overrides: dict[str, Any]


def is_spec_file(path: Path) -> bool:
    """An eval spec lists ``datasets``; a config never does (its models forbid unknown keys)."""
    data = _read_yaml(path)
    return isinstance(data, dict) and "datasets" in data


def load_spec(path: str | os.PathLike[str]) -> EvalSpec:
    spec_path = Path(path).expanduser().resolve()
    data = _read_yaml(spec_path)
    if not isinstance(data, dict):
        raise ConfigError(f"{spec_path}: an eval spec must be a mapping (config, datasets, ...)")
    data = dict(data)
    datasets = data.get("datasets")
    if isinstance(datasets, list):
        data["datasets"] = [{"path": d} if isinstance(d, str) else d for d in datasets]
    spec = validate_spec(data, str(spec_path))
    # Paths in the spec resolve against the spec's folder, as paths in configs do.
    base = spec_path.parent
    spec.config = (base / spec.config).resolve()
    for dataset in spec.datasets:
        dataset.path = (base / dataset.path).expanduser().resolve()
    if spec.index_cache is not None:
        spec.index_cache = (base / spec.index_cache).resolve()
    spec.set = _resolve_path_values(spec.set, base)
    spec.grid = {k: [_resolve_path_value(k, v, base) for v in values] for k, values in spec.grid.items()}
    for variant in spec.variants:
        variant.set = _resolve_path_values(variant.set, base)
    return spec


def _resolve_path_value(key: str, value: Any, base: Path) -> Any:
    # In a spec, as in a config, a relative path means: relative to the file that wrote it; a
    # bundled:NAME model is no path.
    if key in path_keys() and isinstance(value, str) and not _is_bundled(value):
        return str((base / os.path.expanduser(value)).resolve())
    return value


def _resolve_path_values(values: dict[str, Any], base: Path) -> dict[str, Any]:
    return {k: _resolve_path_value(k, v, base) for k, v in values.items()}


def validate_spec(data: dict[str, Any], where: str) -> EvalSpec:
    try:
        return EvalSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = ".".join(str(p) for p in error["loc"]) or "top level"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown key; allowed: {', '.join(EvalSpec.model_fields)}"
            problems.append(f"{loc}: {message}")
        raise ConfigError(f"{where}: invalid eval spec:\n  " + "\n  ".join(problems)) from None


def default_metrics(*, judge: bool) -> list[str]:
    metrics = [*DEFAULT_RETRIEVAL, *DEFAULT_ANSWER]
    return [*metrics, "faithfulness", "relevancy"] if judge else metrics


def expand_variants(spec: EvalSpec) -> list[Variant]:
    """Every variant the spec describes: list entries x grid combinations, in a stable order,
    each checked against the base config so a typo fails before any work."""
    listed = spec.variants or [VariantSpec()]
    keys = list(spec.grid)
    combos = list(itertools.product(*(spec.grid[k] for k in keys))) if keys else [()]
    labels = _short_labels(keys)
    variants: list[Variant] = []
    for entry in listed:
        for combo in combos:
            overrides = {**spec.set, **entry.set, **dict(zip(keys, combo, strict=True))}
            parts = [entry.name] if entry.name else []
            if not entry.name and entry.set:
                parts.append(_describe(entry.set, _short_labels(list(entry.set))))
            if combo:
                parts.append(_describe(dict(zip(keys, combo, strict=True)), labels))
            variants.append(Variant(name=" ".join(parts) or "base", overrides=overrides))
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"eval spec: variant names repeat ({', '.join(duplicates)}); give them names")
    for variant in variants:
        resolve_variant_config(spec.config, variant)
    return variants


def resolve_variant_config(base: Path, variant: Variant) -> Config:
    try:
        return load_config(base, variant.overrides)
    except ConfigError as exc:
        raise ConfigError(f"variant {variant.name!r}: {exc}") from None


def _describe(values: dict[str, Any], labels: dict[str, str]) -> str:
    return ",".join(f"{labels.get(k, k)}={_scalar(v)}" for k, v in values.items())


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _short_labels(keys: list[str]) -> dict[str, str]:
    """``chunking.chunk_size`` -> ``chunk_size`` unless two keys would share a label."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"file not found: {path}")
    try:
        # Bounded as configs are: a spec's aliases must not expand into an alias bomb.
        return yaml.load(path.read_text(encoding="utf-8"), Loader=BoundedSafeLoader)
    except (OSError, UnicodeDecodeError, RecursionError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from None
