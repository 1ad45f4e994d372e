"""The records of one variant on one dataset, summed up: each metric's mean, how many questions
were judged, answered or failed, the judge's verdict counts, and latency and token statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from indexer.eval import metrics as m
from indexer.eval.metrics import rounded


@dataclass
class Totals:
    summary: dict[str, float] = field(default_factory=dict)
    """Metric -> its mean over the questions that have it."""
    counts: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


def aggregate(records: list[dict[str, Any]], metrics: list[str]) -> Totals:
    totals = Totals()
    for metric in metrics:
        values = [r["metrics"][metric] for r in records if metric in r["metrics"]]
        if values:
            totals.summary[metric] = round(m.mean(values) or 0.0, 6)
    judged = sum(1 for r in records if "judged" in r)
    totals.counts = {
        "questions": len(records),
        "judged": judged,
        "answered": sum(1 for r in records if "answer" in r),
        "answer_errors": sum(1 for r in records if "answer_error" in r),
    }
    judge_counts = _judge_counts(records)
    if judge_counts:
        totals.counts["judge"] = judge_counts
    if judged < len(records) and any(m.parse_metric(x)[0] in m.RETRIEVAL_METRICS for x in metrics):
        totals.notices.append(
            f"{len(records) - judged} of {len(records)} questions have no relevance judgements "
            "and are left out of the retrieval metrics"
        )
    totals.latency = _latency(records)
    return totals


def _judge_counts(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per judge metric: verdicts scored, verdicts failed, and a few distinct failure messages."""
    counts = {}
    for name in m.JUDGE_METRICS:
        verdicts = [r["judge"][name] for r in records if name in r.get("judge", {})]
        if verdicts:
            failed = [v for v in verdicts if "error" in v]
            counts[name] = {
                "scored": len(verdicts) - len(failed),
                "failed": len(failed),
                "failures": sorted({v["error"][:160] for v in failed})[:5],
            }
    return counts


def _latency(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, median and 95th percentile of each stage; token counts and generation speed."""
    latency: dict[str, Any] = {}
    for stage in ("retrieval_ms", "ttft_ms", "generation_ms"):
        values = [r["latency"][stage] for r in records if stage in r["latency"]]
        if values:
            latency[stage] = {
                "mean": rounded(m.mean(values)),
                "p50": rounded(m.percentile(values, 0.5)),
                "p95": rounded(m.percentile(values, 0.95)),
            }
    completions = [
        r["tokens"]["completion"] for r in records if r.get("tokens", {}).get("completion") is not None
    ]
    prompts = [r["tokens"]["prompt"] for r in records if r.get("tokens", {}).get("prompt") is not None]
    if completions:
        gen_seconds = sum(r["latency"]["generation_ms"] for r in records if "tokens" in r) / 1000
        latency["tokens"] = {
            "prompt_mean": rounded(m.mean(prompts)),
            "completion_mean": rounded(m.mean(completions)),
            "completion_total": sum(completions),
            "per_second": rounded(sum(completions) / gen_seconds) if gen_seconds > 0 else None,
        }
    return latency
