"""Save a run: its own folder with the resolved configs, the manifests of the indexes it ran
against, per-question JSONL, ``summary.json``, a Markdown report and a PNG chart of the variants.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from indexer.config.loader import config_to_yaml
from indexer.eval.indexes import slug
from indexer.eval.metrics import JUDGE_METRICS, RETRIEVAL_METRICS, parse_metric
from indexer.eval.runner import EvalRun, ResultSet

SUMMARY_FILE = "summary.json"
QUESTIONS_FILE = "questions.jsonl"
REPORT_FILE = "report.md"
CHART_FILE = "chart.png"
# The metrics a chart shows first, when computed: the ones people decide on.
_CHART_PREFERENCE = ("ndcg@10", "mrr@10", "recall@100", "hit@1", "f1", "semantic_similarity", "faithfulness")


def spec_hash(run: EvalRun) -> str:
    material = {
        "config": str(run.spec.config),
        "datasets": [d.describe() for d in run.datasets],
        "metrics": run.metrics,
        "variants": [v.model_dump(mode="json") for v in run.variants],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:7]


def save_run(run: EvalRun, out: Path, *, chart: bool = True) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = out / f"{stamp}-{spec_hash(run)}"
    suffix = 1
    while run_dir.exists():  # the same spec twice within a second
        suffix += 1
        run_dir = out / f"{stamp}-{spec_hash(run)}-{suffix}"
    run_dir.mkdir()
    (run_dir / "configs").mkdir()
    (run_dir / "manifests").mkdir()
    (run_dir / "spec.yaml").write_text(spec_as_yaml(run), encoding="utf-8")
    for variant in run.variants:
        config = next(r.config for r in run.results if r.variant.name == variant.name)
        (run_dir / "configs" / f"{slug(variant.name)}.yaml").write_text(
            config_to_yaml(config), encoding="utf-8"
        )
    for key, prepared in run.indexes.items():
        (run_dir / "manifests" / f"{key}.json").write_text(
            prepared.manifest.model_dump_json(indent=2), encoding="utf-8"
        )
    with (run_dir / QUESTIONS_FILE).open("w", encoding="utf-8") as fh:
        for result in run.results:
            for record in result.records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    summary = summary_dict(run, run_dir)
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    if chart:
        write_chart(run, run_dir / CHART_FILE)
    (run_dir / REPORT_FILE).write_text(render_markdown(run, summary, chart=chart), encoding="utf-8")
    return run_dir


def summary_dict(run: EvalRun, run_dir: Path) -> dict[str, Any]:
    spec = run.spec
    return {
        "run_id": run_dir.name,
        "run_dir": str(run_dir),
        "started_at": run.started_at,
        "seconds": run.seconds,
        "spec": {
            "config": str(spec.config),
            "datasets": [d.describe() for d in run.datasets],
            "metrics": run.metrics,
            "variants": [v.model_dump(mode="json") for v in run.variants],
            "judge": spec.judge,
            "answers": spec.answers,
        },
        "indexes": {key: prepared.describe() for key, prepared in run.indexes.items()},
        "results": [_result_dict(r) for r in run.results],
    }


def _result_dict(result: ResultSet) -> dict[str, Any]:
    return {
        "variant": result.variant.name,
        "overrides": result.variant.overrides,
        "dataset": result.dataset.name,
        "index": result.index.key,
        "summary": result.summary,
        "counts": result.counts,
        "latency": result.latency,
        "notices": result.notices,
        "seconds": result.seconds,
    }


def load_summary(run_dir: Path) -> dict[str, Any]:
    from indexer.errors import IndexerError

    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        raise IndexerError(f"{run_dir} is not an eval run: it has no {SUMMARY_FILE}")
    return json.loads(path.read_text(encoding="utf-8"))


def load_questions(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / QUESTIONS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- Markdown -----------------------------------------------------------------------------------


def render_markdown(run: EvalRun, summary: dict[str, Any], *, chart: bool) -> str:
    lines = [
        f"# Evaluation {summary['run_id']}",
        "",
        f"- Base config: `{run.spec.config}`",
        f"- Started {run.started_at}, took {run.seconds:.1f} s",
        f"- Variants: {len(run.variants)}; datasets: {len(run.datasets)}; "
        f"indexes: {len(run.indexes)} (variants with the same embedding and chunking share one)",
        "",
    ]
    if chart:
        lines += [f"![metrics by variant]({CHART_FILE})", ""]
    for dataset in run.datasets:
        results = [r for r in run.results if r.dataset.name == dataset.name]
        info = dataset.describe()
        lines += [
            f"## {dataset.name}",
            "",
            f"{info['kind']} dataset at `{info['path']}`: {info['questions']} questions, "
            f"{info['judged']} with relevance judgements, {info['with_answers']} with reference answers.",
            "",
        ]
        lines += _metric_table(results, run.metrics)
        lines += _latency_table(results)
        lines += _judge_lines(results)
        for result in results:
            for notice in result.notices:
                lines.append(f"- *{result.variant.name}*: {notice}")
        if any(r.notices for r in results):
            lines.append("")
        lines += _hardest(results)
    lines += ["## Indexes", "", "| index | documents | chunks | chunking | embedded this run | variants |"]
    lines.append("|---|---:|---:|---|---:|---|")
    for key, prepared in run.indexes.items():
        chunking = prepared.manifest.chunking
        lines.append(
            f"| `{key}` | {len(prepared.manifest.files)} | {prepared.manifest.chunk_count} | "
            f"{chunking.get('chunk_size')}/{chunking.get('chunk_overlap')} | "
            f"{prepared.build.get('chunks_embedded', 0)} | {', '.join(sorted(set(prepared.variants)))} |"
        )
    lines += [
        "",
        "## How to read this",
        "",
        "- Retrieval metrics are computed on documents (a document scores its best chunk), over the "
        "questions that have relevance judgements, as trec_eval / BEIR compute them: nDCG uses graded "
        "relevance, linear gain and a log2 discount, with the ideal ranking from all judged documents; "
        "a judged question that retrieves nothing scores 0; equal scores rank by document id.",
        "- exact_match and f1 follow the SQuAD script (lowercase, no punctuation or articles, max over "
        "references); semantic_similarity is the cosine of answer and reference embeddings. All three "
        "score the answer the user is shown (checked: query.answer_style and query.unsupported applied), "
        "without its [n] citations and an extract's quote marks.",
        "- The checks are shares read off each answer's own report: abstained (of all questions), "
        "answered_correct (not abstained and a reference in the answer), and, of the answers given, "
        "flagged (a sentence with supported: false), cited (a citation by the model or the system), "
        "model_cited (an [n] the model wrote), unflagged_number (a sentence marked supported that states "
        "digits no retrieved passage holds: should be 0).",
        "- faithfulness and relevancy are LLM verdicts (yes 1, partly 0.5, no 0), averaged over the "
        "verdicts the judge gave; failures are counted, not scored.",
        "",
    ]
    return "\n".join(lines)


def _metric_table(results: list[ResultSet], metrics: list[str]) -> list[str]:
    shown = [x for x in metrics if any(x in r.summary for r in results)]
    if not shown:
        return ["No metric could be computed.", ""]
    best = {x: max(r.summary[x] for r in results if x in r.summary) for x in shown}
    lines = ["| variant | " + " | ".join(shown) + " |", "|---|" + "---:|" * len(shown)]
    for result in results:
        cells = []
        for metric in shown:
            value = result.summary.get(metric)
            text = "–" if value is None else f"{value:.4f}"
            if value is not None and len(results) > 1 and value == best[metric]:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {result.variant.name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _latency_table(results: list[ResultSet]) -> list[str]:
    stages = [s for s in ("retrieval_ms", "ttft_ms", "generation_ms") if any(s in r.latency for r in results)]
    if not stages:
        return []
    with_tokens = any("tokens" in r.latency for r in results)
    header = " | ".join(f"{s.removesuffix('_ms')} p50 / p95 (ms)" for s in stages)
    header += " | tokens out (mean) | tokens/s" if with_tokens else ""
    columns = len(stages) + (2 if with_tokens else 0)
    lines = [f"| variant | {header} |", "|---|" + "---:|" * columns]
    for result in results:
        cells = []
        for stage in stages:
            lat = result.latency.get(stage)
            cells.append(f"{lat['p50']:.1f} / {lat['p95']:.1f}" if lat else "–")
        if with_tokens:
            tokens = result.latency.get("tokens", {})
            per_s = tokens.get("per_second")
            cells.append(f"{tokens['completion_mean']:.1f}" if tokens else "–")
            cells.append(f"{per_s:.1f}" if per_s else "–")
        lines.append(f"| {result.variant.name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _judge_lines(results: list[ResultSet]) -> list[str]:
    lines = []
    for result in results:
        for name, counts in result.counts.get("judge", {}).items():
            line = (
                f"- *{result.variant.name}* {name}: {counts['scored']} verdicts, "
                f"{counts['failed']} judge failures"
            )
            if counts["failures"]:
                line += f" (e.g. {counts['failures'][0]})"
            lines.append(line)
    return [*lines, ""] if lines else []


def _hardest(results: list[ResultSet], count: int = 5) -> list[str]:
    """The questions the first variant found hardest, on its main metric: where to look first."""
    result = results[0]
    metric = _main_metric(result.summary)
    if metric is None:
        return []
    scored = [r for r in result.records if metric in r["metrics"]]
    scored.sort(key=lambda r: (r["metrics"][metric], r["id"]))
    lines = [f"Hardest questions for *{result.variant.name}* by {metric}:", ""]
    for record in scored[:count]:
        text = " ".join(record["question"].split())
        text = text if len(text) <= 100 else text[:97] + "..."
        lines.append(f"- `{record['id']}` ({metric} {record['metrics'][metric]:.3f}): {text}")
    return [*lines, ""]


def _main_metric(summary: dict[str, float]) -> str | None:
    for metric in _CHART_PREFERENCE:
        if metric in summary:
            return metric
    return next(iter(summary), None)


# --- chart --------------------------------------------------------------------------------------


def chart_metrics(run: EvalRun) -> list[str]:
    computed = [x for x in run.metrics if any(x in r.summary for r in run.results)]
    preferred = [x for x in _CHART_PREFERENCE if x in computed]
    rest = [x for x in computed if x not in preferred and _charted_kind(x)]
    return (preferred + rest)[:6]


def _charted_kind(metric: str) -> bool:
    name, _ = parse_metric(metric)
    return name in RETRIEVAL_METRICS or name in JUDGE_METRICS or name in ("f1", "semantic_similarity")


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        from indexer.errors import IndexerError

        raise IndexerError(
            "the run's PNG chart needs matplotlib: pip install 'indexer[eval]' (or pass --no-chart)"
        ) from None


def write_chart(run: EvalRun, path: Path) -> None:
    """Grouped bars: one panel per dataset, a group per metric, a bar per variant."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    metrics = chart_metrics(run)
    datasets = run.datasets
    fig, axes = plt.subplots(
        len(datasets),
        1,
        figsize=(max(6.0, 1.6 * max(len(metrics), 1) + 2), 3.6 * len(datasets)),
        squeeze=False,
    )
    variants = [v.name for v in run.variants]
    width = 0.8 / max(len(variants), 1)
    for ax, dataset in zip(axes[:, 0], datasets, strict=True):
        for i, variant in enumerate(variants):
            result = next(
                r for r in run.results if r.dataset.name == dataset.name and r.variant.name == variant
            )
            values = [result.summary.get(x, 0.0) for x in metrics]
            positions = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(metrics))]
            ax.bar(positions, values, width=width, label=variant)
        ax.set_xticks(range(len(metrics)), metrics)
        ax.set_ylim(0, 1.05)
        ax.set_title(dataset.name)
        ax.grid(axis="y", alpha=0.3)
        if len(variants) > 1:
            # Below the panel, where it covers no bar.
            ax.legend(
                fontsize="small", ncol=min(len(variants), 3), loc="upper center", bbox_to_anchor=(0.5, -0.12)
            )
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def spec_as_yaml(run: EvalRun) -> str:
    return yaml.safe_dump(run.spec.model_dump(mode="json"), sort_keys=False)
