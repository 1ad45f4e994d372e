"""One evaluation as a user asks for it: a config with datasets, or a spec file; run, save, and
check the ``--fail-under`` gates. The CLI and the Python API both come through here."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.errors import ConfigError
from indexer.eval.metrics import parse_metric
from indexer.eval.runner import EvalRun, fail_under_checks, run_evaluation
from indexer.eval.spec import DatasetSpec, EvalSpec, is_spec_file, load_spec, validate_spec

DEFAULT_OUT = Path("runs")


@dataclass
class EvalOutcome:
    run: EvalRun
    run_dir: Path
    summary: dict[str, Any]
    failures: list[str]

    def to_dict(self) -> dict[str, Any]:
        """What ``--json`` prints: ``summary`` (metric -> number) when the run has one result,
        and every result under ``results``."""
        results = self.summary["results"]
        data: dict[str, Any] = {
            "run_id": self.summary["run_id"],
            "run_dir": str(self.run_dir),
        }
        if len(results) == 1:
            data["summary"] = results[0]["summary"]
        data["results"] = results
        data["indexes"] = self.summary["indexes"]
        data["failed_checks"] = self.failures
        return data


def parse_gates(options: Iterable[str]) -> dict[str, float]:
    """``["ndcg@10=0.6"]`` -> ``{"ndcg@10": 0.6}``, with errors that say what was wrong."""
    gates = {}
    for option in options:
        metric, sep, value = option.partition("=")
        if not sep:
            raise ConfigError(
                f"--fail-under {option!r}: expected METRIC=VALUE, e.g. --fail-under ndcg@10=0.6"
            )
        try:
            parse_metric(metric)
            gates[metric.strip().lower()] = float(value)
        except ValueError as exc:
            raise ConfigError(
                f"--fail-under {option!r}: {exc if 'metric' in str(exc) else 'not a number'}"
            ) from None
    return gates


def make_spec(
    target: str | os.PathLike[str],
    *,
    datasets: Sequence[str | os.PathLike[str]] = (),
    overrides: Mapping[str, Any] | None = None,
    metrics: Sequence[str] | None = None,
    judge: bool = False,
    answers: bool | None = None,
    queries: str | None = None,
    qrels: str | None = None,
    limit: int | None = None,
    index_cache: str | os.PathLike[str] | None = None,
    fail_under: Mapping[str, float] | None = None,
) -> EvalSpec:
    """An eval spec from a spec file (options add to it) or from a config and datasets."""
    path = Path(target).expanduser().resolve()
    if is_spec_file(path):
        if datasets:
            raise ConfigError(f"{path} is an eval spec: list its datasets there, not with --dataset")
        spec = load_spec(path)
        updates: dict[str, Any] = {"set": {**spec.set, **(overrides or {})}, "judge": spec.judge or judge}
        if metrics:
            updates["metrics"] = list(metrics)
        if answers is not None:
            updates["answers"] = answers
        if index_cache is not None:
            updates["index_cache"] = Path(index_cache).resolve()
        updates["fail_under"] = {**spec.fail_under, **(fail_under or {})}
        if limit is not None:
            spec.datasets = [d.model_copy(update={"limit": limit}) for d in spec.datasets]
        return validate_spec({**spec.model_dump(), **updates}, str(path))
    if not datasets:
        raise ConfigError(f"{path} is a config: name the questions to evaluate with --dataset PATH")
    return validate_spec(
        {
            "config": path,
            "datasets": [
                DatasetSpec(path=Path(d).expanduser().resolve(), queries=queries, qrels=qrels, limit=limit)
                for d in datasets
            ],
            "metrics": list(metrics) if metrics else None,
            "set": dict(overrides or {}),
            "judge": judge,
            "answers": answers,
            "index_cache": Path(index_cache).resolve() if index_cache else None,
            "fail_under": dict(fail_under or {}),
        },
        "the command line",
    )


def evaluate(
    spec: EvalSpec,
    *,
    out: str | os.PathLike[str] = DEFAULT_OUT,
    chart: bool = True,
    show_progress: bool = False,
) -> EvalOutcome:
    from indexer.eval.report import require_matplotlib, save_run, summary_dict

    if chart:
        require_matplotlib()  # before the work, not after it
    run = run_evaluation(spec, show_progress=show_progress)
    run_dir = save_run(run, Path(out).expanduser().resolve(), chart=chart)
    return EvalOutcome(run, run_dir, summary_dict(run, run_dir), fail_under_checks(run, spec.fail_under))
