"""Run an evaluation: every variant of a spec on every dataset, question by question. Each
question is scored by ``scoring.QuestionScorer``; each variant's records are summed up by
``aggregate``; this module loops, times, and checks the ``--fail-under`` gates."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from indexer.components import Components
from indexer.config.models import Config
from indexer.errors import IndexerError
from indexer.eval import metrics as m
from indexer.eval.aggregate import aggregate
from indexer.eval.datasets import Dataset, load_dataset
from indexer.eval.indexes import IndexCache, PreparedIndex
from indexer.eval.scoring import QuestionScorer, retrieval_depth
from indexer.eval.spec import EvalSpec, Variant, default_metrics, expand_variants, resolve_variant_config
from indexer.progress import progress_bar
from indexer.query.engine import QueryEngine


@dataclass
class ResultSet:
    """One variant on one dataset."""

    variant: Variant
    dataset: Dataset
    config: Config
    index: PreparedIndex
    records: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.variant.name} @ {self.dataset.name}"


@dataclass
class EvalRun:
    spec: EvalSpec
    metrics: list[str]
    variants: list[Variant]
    datasets: list[Dataset]
    results: list[ResultSet] = field(default_factory=list)
    indexes: dict[str, PreparedIndex] = field(default_factory=dict)
    started_at: str = ""
    seconds: float = 0.0


def run_evaluation(spec: EvalSpec, *, show_progress: bool = False) -> EvalRun:
    started = time.perf_counter()
    metrics = list(spec.metrics or default_metrics(judge=spec.judge))
    if spec.judge:
        metrics += [j for j in m.JUDGE_METRICS if j not in metrics]
    metrics += [g for g in spec.fail_under if g not in metrics]  # a gate must be measured
    variants = expand_variants(spec)  # checks every variant's config before any work
    datasets = [
        load_dataset(d.path, name=d.name, queries=d.queries, qrels=d.qrels, limit=d.limit)
        for d in spec.datasets
    ]
    _check_unique_names(datasets)
    run = EvalRun(
        spec=spec,
        metrics=metrics,
        variants=variants,
        datasets=datasets,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    cache = IndexCache(spec.index_cache, llm_cache={}, show_progress=show_progress)
    total = len(variants) * len(datasets)
    for dataset in datasets:
        for variant in variants:
            config = resolve_variant_config(spec.config, variant)
            prepared, components = cache.prepare(dataset, config, variant.name)
            label = f"[{len(run.results) + 1}/{total}] {variant.name} @ {dataset.name}"
            run.results.append(
                evaluate_variant(variant, dataset, prepared, components, metrics, spec, label, show_progress)
            )
    run.indexes = cache.prepared
    run.seconds = round(time.perf_counter() - started, 3)
    return run


def evaluate_variant(
    variant: Variant,
    dataset: Dataset,
    prepared: PreparedIndex,
    components: Components,
    metrics: list[str],
    spec: EvalSpec,
    label: str,
    show_progress: bool,
) -> ResultSet:
    started = time.perf_counter()
    # The config recorded is the one the engine ran (on the shared index, without de-duplication).
    result = ResultSet(variant=variant, dataset=dataset, config=components.config, index=prepared)
    engine = QueryEngine(components, prepared.index)
    answers = spec.answers if spec.answers is not None else (dataset.has_answers or spec.judge)
    llm = components.llm if answers else None
    if answers and llm is None:
        result.notices.append(
            f"answers were not generated: {components.llm_notice or 'llm.provider is none'}"
        )
    scorer = QuestionScorer(
        engine=engine,
        components=components,
        llm=llm,
        judge=spec.judge and llm is not None,
        metrics=metrics,
        depth=retrieval_depth(metrics, components.config.query.top_k),
        chunk_total=max(prepared.manifest.chunk_count, 1),
    )

    with progress_bar(label, total=len(dataset.questions), enabled=show_progress) as bar:
        for question in dataset.questions:
            record = scorer.score(question)
            record.update(dataset=dataset.name, variant=variant.name)
            result.records.append(record)
            bar.advance()

    totals = aggregate(result.records, metrics)
    result.summary, result.counts, result.latency = totals.summary, totals.counts, totals.latency
    result.notices.extend(totals.notices)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _check_unique_names(datasets: list[Dataset]) -> None:
    names = [d.name for d in datasets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise IndexerError(f"eval spec: dataset names repeat ({', '.join(repeated)}): give them a name")


def fail_under_checks(run: EvalRun, gates: dict[str, float]) -> list[str]:
    """A line for each result below a ``--fail-under`` minimum (or missing the metric)."""
    failures = []
    for result in run.results:
        for metric, minimum in gates.items():
            value = result.summary.get(metric)
            if value is None:
                failures.append(f"{metric} was not computed for {result.label} (required >= {minimum:g})")
            elif value < minimum:
                failures.append(f"{metric} = {value:.4f} < {minimum:g} for {result.label}")
    return failures
