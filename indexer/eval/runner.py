"""Run an evaluation: every variant of a spec on every dataset, question by question.

Retrieval is scored on documents: the engine's chunks map back to their document (its best chunk
score), deep enough to fill the deepest cut-off asked for (recall@100 retrieves 100 documents).
Answers, when there is an LLM and something to score them against, are generated through the same
query engine a user queries, timed by stage, and scored against the references.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from indexer.components import Components
from indexer.config.models import Config
from indexer.errors import IndexerError
from indexer.eval import metrics as m
from indexer.eval.datasets import Dataset, Question, load_dataset
from indexer.eval.indexes import IndexCache, PreparedIndex
from indexer.eval.spec import EvalSpec, Variant, default_metrics, expand_variants, resolve_variant_config
from indexer.progress import progress_bar
from indexer.query.engine import QueryEngine, Source

# A retrieved chunk counts as a reference context's evidence when at least this share of the
# shorter text's word trigrams occur in the other: robust to chunk boundaries cutting a context.
CONTEXT_MATCH = 0.5


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
                evaluate_variant(
                    variant, dataset, config, prepared, components, metrics, spec, label, show_progress
                )
            )
    run.indexes = cache.prepared
    run.seconds = round(time.perf_counter() - started, 3)
    return run


def evaluate_variant(
    variant: Variant,
    dataset: Dataset,
    config: Config,
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
    retrieval_metrics = [x for x in metrics if m.parse_metric(x)[0] in m.RETRIEVAL_METRICS]
    depth = max((m.parse_metric(x)[1] or 0 for x in retrieval_metrics), default=0)
    depth = max(depth, config.query.top_k)
    answers = spec.answers if spec.answers is not None else (dataset.has_answers or spec.judge)
    llm = components.llm if answers else None
    if answers and llm is None:
        result.notices.append(
            f"answers were not generated: {components.llm_notice or 'llm.provider is none'}"
        )
    judge = spec.judge and llm is not None
    chunk_total = max(prepared.manifest.chunk_count, 1)

    with progress_bar(label, total=len(dataset.questions), enabled=show_progress) as bar:
        for question in dataset.questions:
            record = _evaluate_question(
                question, engine, components, llm, judge, retrieval_metrics, metrics, depth, chunk_total
            )
            record.update(dataset=dataset.name, variant=variant.name)
            result.records.append(record)
            bar.advance()

    _aggregate(result, metrics)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _evaluate_question(
    question: Question,
    engine: QueryEngine,
    components: Components,
    llm: Any,
    judge: bool,
    retrieval_metrics: list[str],
    metrics: list[str],
    depth: int,
    chunk_total: int,
) -> dict[str, Any]:
    record: dict[str, Any] = {"id": question.id, "question": question.question}
    scores: dict[str, float] = {}
    t0 = time.perf_counter()
    if question.contexts:
        sources = engine.retrieve(question.question, top_k=depth)
        ranked, qrels = _context_ranking(sources, question.contexts)
        record["retrieved"] = [{"id": s.chunk_id, "doc_id": s.doc_id, "score": _r(s.score)} for s in sources]
    else:
        doc_scores = _retrieve_documents(engine, question.question, depth, chunk_total)
        ranked, qrels = m.rank_documents(doc_scores), question.qrels
        record["retrieved"] = [{"id": doc, "score": _r(doc_scores[doc])} for doc in ranked[:depth]]
    latency = {"retrieval_ms": _ms(t0)}
    if qrels:
        scores.update(m.retrieval_scores(ranked, qrels, retrieval_metrics))
        record["judged"] = len(qrels)
    if llm is not None:
        _answer(question, engine, components, llm, judge, metrics, record, scores, latency)
    record["metrics"] = {k: _r(v) for k, v in scores.items()}
    record["latency"] = latency
    return record


def _retrieve_documents(engine: QueryEngine, question: str, depth: int, chunk_total: int) -> dict[str, float]:
    """Documents with their best chunk score, at least ``depth`` of them when the index has as many:
    documents of several chunks need more than ``depth`` chunks."""
    n = min(depth * 2, chunk_total)
    while True:
        sources = engine.retrieve(question, top_k=n)
        docs = m.max_score_per_document([(s.doc_id, s.score) for s in sources])
        if len(docs) >= depth or len(sources) < n or n >= chunk_total:
            return docs
        n = min(n * 2, chunk_total)


def _answer(
    question: Question,
    engine: QueryEngine,
    components: Components,
    llm: Any,
    judge: bool,
    metrics: list[str],
    record: dict[str, Any],
    scores: dict[str, float],
    latency: dict[str, float],
) -> None:
    from indexer.eval.judge import judge_faithfulness, judge_relevancy

    t0 = time.perf_counter()
    try:
        stream = engine.stream(question.question)
        t_gen = time.perf_counter()
        first: float | None = None
        for _ in stream:
            if first is None:
                first = time.perf_counter()
    except IndexerError as exc:  # e.g. the passages do not fit llm.n_ctx: a fact about this variant
        record["answer_error"] = str(exc)
        return
    t_end = time.perf_counter()
    answer = stream.answer or ""
    usage = llm.last_usage
    latency.update(
        answer_retrieval_ms=round((t_gen - t0) * 1000, 2),
        ttft_ms=round(((first or t_end) - t_gen) * 1000, 2),
        generation_ms=round((t_end - t_gen) * 1000, 2),
    )
    record.update(
        answer=answer,
        references=question.answers,
        sources=[s.chunk_id for s in stream.sources],
        tokens={
            "prompt": usage.prompt_tokens if usage else None,
            "completion": usage.completion_tokens if usage else None,
        },
    )
    if question.answers:
        if "exact_match" in metrics:
            scores["exact_match"] = m.exact_match(answer, question.answers)
        if "f1" in metrics:
            scores["f1"] = m.token_f1(answer, question.answers)
        if "semantic_similarity" in metrics:
            scores["semantic_similarity"] = _semantic_similarity(components, answer, question.answers)
    if judge:
        verdicts = {}
        if "faithfulness" in metrics:
            verdicts["faithfulness"] = judge_faithfulness(llm, answer, [s.text for s in stream.sources])
        if "relevancy" in metrics:
            verdicts["relevancy"] = judge_relevancy(llm, question.question, answer)
        record["judge"] = {name: v.to_dict() for name, v in verdicts.items()}
        for name, verdict in verdicts.items():
            if verdict.score is not None:
                scores[name] = verdict.score


def _semantic_similarity(components: Components, answer: str, references: list[str]) -> float:
    if not answer.strip():
        return 0.0
    vectors = components.embed_model.get_text_embedding_batch([answer, *references])
    return max(m.cosine(vectors[0], ref) for ref in vectors[1:])


def _context_ranking(sources: list[Source], contexts: list[str]) -> tuple[list[str], dict[str, int]]:
    """Chunks -> ids of the reference contexts they evidence (each credited once, at its best
    rank); chunks that evidence none keep their own id and count as not relevant."""
    context_grams = [_trigrams(c) for c in contexts]
    credited: set[int] = set()
    ranked = []
    for source in sources:
        chunk_grams = _trigrams(source.text)
        match = next(
            (
                i
                for i, grams in enumerate(context_grams)
                if i not in credited and _overlaps(grams, chunk_grams)
            ),
            None,
        )
        if match is None:
            ranked.append(f"chunk:{source.chunk_id}")
        else:
            credited.add(match)
            ranked.append(f"context:{match + 1}")
    return ranked, {f"context:{i + 1}": 1 for i in range(len(contexts))}


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = m.normalize_answer(text).split()
    return {tuple(words[i : i + 3]) for i in range(max(len(words) - 2, 1))} if words else set()


def _overlaps(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> bool:
    if not a or not b:
        return False
    return len(a & b) / min(len(a), len(b)) >= CONTEXT_MATCH


def _aggregate(result: ResultSet, metrics: list[str]) -> None:
    records = result.records
    for metric in metrics:
        values = [r["metrics"][metric] for r in records if metric in r["metrics"]]
        if values:
            result.summary[metric] = round(m.mean(values) or 0.0, 6)
    judged = sum(1 for r in records if "judged" in r)
    answered = sum(1 for r in records if "answer" in r)
    result.counts = {
        "questions": len(records),
        "judged": judged,
        "answered": answered,
        "answer_errors": sum(1 for r in records if "answer_error" in r),
    }
    judge_counts = {}
    for name in m.JUDGE_METRICS:
        verdicts = [r["judge"][name] for r in records if name in r.get("judge", {})]
        if verdicts:
            failed = [v for v in verdicts if "error" in v]
            judge_counts[name] = {
                "scored": len(verdicts) - len(failed),
                "failed": len(failed),
                "failures": sorted({v["error"][:160] for v in failed})[:5],
            }
    if judge_counts:
        result.counts["judge"] = judge_counts
    if judged < len(records) and any(m.parse_metric(x)[0] in m.RETRIEVAL_METRICS for x in metrics):
        result.notices.append(
            f"{len(records) - judged} of {len(records)} questions have no relevance judgements "
            "and are left out of the retrieval metrics"
        )
    for stage in ("retrieval_ms", "ttft_ms", "generation_ms"):
        values = [r["latency"][stage] for r in records if stage in r["latency"]]
        if values:
            result.latency[stage] = {
                "mean": _r(m.mean(values)),
                "p50": _r(m.percentile(values, 0.5)),
                "p95": _r(m.percentile(values, 0.95)),
            }
    completions = [
        r["tokens"]["completion"] for r in records if r.get("tokens", {}).get("completion") is not None
    ]
    prompts = [r["tokens"]["prompt"] for r in records if r.get("tokens", {}).get("prompt") is not None]
    if completions:
        gen_seconds = sum(r["latency"]["generation_ms"] for r in records if "tokens" in r) / 1000
        result.latency["tokens"] = {
            "prompt_mean": _r(m.mean(prompts)),
            "completion_mean": _r(m.mean(completions)),
            "completion_total": sum(completions),
            "per_second": _r(sum(completions) / gen_seconds) if gen_seconds > 0 else None,
        }


def _check_unique_names(datasets: list[Dataset]) -> None:
    names = [d.name for d in datasets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise IndexerError(f"eval spec: dataset names repeat ({', '.join(repeated)}): give them a name")


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


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
