"""Compare two saved runs: per-metric deltas for each result they share, and the questions whose
outcome flipped (passed in one run, failed in the other)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.errors import IndexerError
from indexer.eval.metrics import parse_metric
from indexer.eval.report import load_questions, load_summary


@dataclass
class Pairing:
    label: str
    a: dict[str, Any]
    b: dict[str, Any]
    deltas: dict[str, dict[str, float | None]] = field(default_factory=dict)
    flipped_up: list[dict[str, Any]] = field(default_factory=list)
    flipped_down: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "a": {"variant": self.a["variant"], "dataset": self.a["dataset"]},
            "b": {"variant": self.b["variant"], "dataset": self.b["dataset"]},
            "deltas": self.deltas,
            "improved": self.flipped_up,
            "regressed": self.flipped_down,
        }


@dataclass
class Comparison:
    run_a: str
    run_b: str
    metric: str
    threshold: float
    pairings: list[Pairing]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "flip_metric": self.metric,
            "flip_threshold": self.threshold,
            "results": [p.to_dict() for p in self.pairings],
        }


def compare_runs(
    run_a: Path, run_b: Path, *, metric: str | None = None, threshold: float = 0.5
) -> Comparison:
    """Results pair up by (variant, dataset); two single-variant runs on a dataset pair up
    whatever their variants are called. A question flips when its ``metric`` crosses
    ``threshold`` (default metric: hit@10, else the first one both runs computed)."""
    if metric is not None:
        try:
            parse_metric(metric)
        except ValueError as exc:
            raise IndexerError(f"--metric: {exc}") from None
    summary_a, summary_b = load_summary(run_a), load_summary(run_b)
    pairs = _pair(summary_a["results"], summary_b["results"])
    if not pairs:
        raise IndexerError(f"{run_a.name} and {run_b.name} share no (variant, dataset) result to compare")
    questions_a = _index_questions(load_questions(run_a))
    questions_b = _index_questions(load_questions(run_b))
    chosen = metric or _default_flip_metric(pairs)
    pairings = []
    for a, b in pairs:
        label = a["variant"] if a["variant"] == b["variant"] else f"{a['variant']} -> {b['variant']}"
        pairing = Pairing(label=f"{label} @ {a['dataset']}", a=a, b=b)
        for name in [*a["summary"], *(k for k in b["summary"] if k not in a["summary"])]:
            va, vb = a["summary"].get(name), b["summary"].get(name)
            pairing.deltas[name] = {
                "a": va,
                "b": vb,
                "delta": round(vb - va, 6) if va is not None and vb is not None else None,
            }
        qa = questions_a.get((a["variant"], a["dataset"]), {})
        qb = questions_b.get((b["variant"], b["dataset"]), {})
        for qid in sorted(set(qa) & set(qb)):
            va, vb = qa[qid]["metrics"].get(chosen), qb[qid]["metrics"].get(chosen)
            if va is None or vb is None:
                continue
            item = {"id": qid, "question": qb[qid]["question"], "a": va, "b": vb}
            if va < threshold <= vb:
                pairing.flipped_up.append(item)
            elif vb < threshold <= va:
                pairing.flipped_down.append(item)
        pairings.append(pairing)
    return Comparison(run_a.name, run_b.name, chosen, threshold, pairings)


def _pair(results_a: list[dict[str, Any]], results_b: list[dict[str, Any]]) -> list[tuple[dict, dict]]:
    by_key_b = {(r["variant"], r["dataset"]): r for r in results_b}
    pairs = [
        (r, by_key_b[(r["variant"], r["dataset"])])
        for r in results_a
        if (r["variant"], r["dataset"]) in by_key_b
    ]
    paired_datasets = {a["dataset"] for a, _ in pairs}
    for dataset in {r["dataset"] for r in results_a} - paired_datasets:
        only_a = [r for r in results_a if r["dataset"] == dataset]
        only_b = [r for r in results_b if r["dataset"] == dataset]
        if len(only_a) == 1 and len(only_b) == 1:
            pairs.append((only_a[0], only_b[0]))
    return pairs


def _index_questions(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    grouped: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault((record["variant"], record["dataset"]), {})[record["id"]] = record
    return grouped


def _default_flip_metric(pairs: list[tuple[dict, dict]]) -> str:
    shared = [k for k in pairs[0][0]["summary"] if k in pairs[0][1]["summary"]]
    for preferred in ("hit@10", "hit@5", "hit@1", "f1", "faithfulness"):
        if preferred in shared:
            return preferred
    if not shared:
        raise IndexerError("the two runs share no metric to compare")
    return shared[0]


def render_comparison(comparison: Comparison, *, max_flips: int = 20) -> str:
    lines = [f"A: {comparison.run_a}", f"B: {comparison.run_b}", ""]
    for pairing in comparison.pairings:
        lines.append(pairing.label)
        lines.append(f"  {'metric':<22}{'A':>10}{'B':>10}{'delta':>10}")
        for name, values in pairing.deltas.items():
            a, b, d = values["a"], values["b"], values["delta"]
            cells = [f"{x:>10.4f}" if x is not None else f"{'–':>10}" for x in (a, b)]
            delta = f"{d:>+10.4f}" if d is not None else f"{'–':>10}"
            lines.append(f"  {name:<22}{cells[0]}{cells[1]}{delta}")
        lines.append(
            f"  flipped on {comparison.metric} (threshold {comparison.threshold:g}): "
            f"{len(pairing.flipped_up)} improved, {len(pairing.flipped_down)} regressed"
        )
        for sign, items in (("+", pairing.flipped_up), ("-", pairing.flipped_down)):
            for item in items[:max_flips]:
                text = " ".join(item["question"].split())
                text = text if len(text) <= 80 else text[:77] + "..."
                lines.append(f"    {sign} {item['id']}: {item['a']:.3f} -> {item['b']:.3f}  {text}")
            if len(items) > max_flips:
                lines.append(f"    {sign} ... and {len(items) - max_flips} more")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
