"""Abstention ("not in your documents"): how often the answer abstains on questions its documents
cannot answer, and how often it still answers those they can, per threshold and retrieval mode.

    python -m benchmarks.abstention                       # the sweep of configs/eval-abstention.yaml
    python -m benchmarks.abstention --json runs/abstention.json

Each dataset of the spec is indexed once (the ``indexer eval`` index cache). Its own questions are
answerable against its corpus; the other datasets' questions and the hand-written
``data/unanswerable_questions.jsonl`` are unanswerable there. A question abstains when the best
relevance of its ``query.top_k`` passages (``indexer.query.relevance``) is below the threshold;
only retrieval runs (no LLM), since abstaining happens before it would be called.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import add_markdown_flag, cpu_description, markdown_table

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "configs" / "eval-abstention.yaml"
UNANSWERABLE = ROOT / "data" / "unanswerable_questions.jsonl"
# Paul Graham's questions are asked of his essay: configs/eval-paul-graham.yaml's overrides.
CORPUS_SET: dict[str, dict[str, Any]] = {
    "paul_graham": {
        "data.input_dir": str(ROOT.parent / "shared" / "data" / "paul_graham_essay"),
        "data.required_exts": [".txt"],
        "data.exclude": ["*LFS_POINTER*", "PROVENANCE*"],
        "vector_store.collection": "paul-graham",
    }
}
# Question sets answered from another set's corpus: asked of that one, never indexed apart.
SAME_CORPUS = {"sample_short": "sample"}
GOAL_ABSTAIN, GOAL_ANSWER = 0.90, 0.95


def measure(spec_path: Path) -> dict[str, Any]:
    """Per corpus and mode, each question's best relevance (and its parts, for the sweep)."""
    from indexer.config.loader import load_config
    from indexer.eval.datasets import load_dataset
    from indexer.eval.indexes import IndexCache
    from indexer.eval.spec import expand_variants, load_spec
    from indexer.query.engine import QueryEngine

    spec = load_spec(spec_path)
    datasets = [
        load_dataset(d.path, name=d.name, queries=d.queries, qrels=d.qrels, limit=d.limit)
        for d in spec.datasets
    ]
    extra = load_dataset(UNANSWERABLE, name="handwritten")
    cache = IndexCache(spec.index_cache, llm_cache={}, show_progress=True)
    rows: list[dict[str, Any]] = []
    for corpus in [d for d in datasets if d.name not in SAME_CORPUS]:
        for variant in expand_variants(spec):
            overrides = {**variant.overrides, **CORPUS_SET.get(corpus.name, {})}
            config = load_config(spec.config, overrides)
            prepared, components = cache.prepare(corpus, config, variant.name)
            engine = QueryEngine(components, prepared.index)
            mode = components.config.retrieval.mode
            for asked in [*datasets, extra]:
                for question in asked.questions:
                    started = time.perf_counter()
                    found = engine.retrieve(question.question)
                    seconds = time.perf_counter() - started
                    scale = None
                    if mode != "vector":
                        store = prepared.index.chunk_store(create=False)
                        assert store is not None
                        scale = prepared.index.keyword_index(store)[0].score_scale(question.question)
                    rows.append(
                        {
                            "corpus": corpus.name,
                            "mode": mode,
                            "asked": asked.name,
                            "id": question.id,
                            "answerable": SAME_CORPUS.get(asked.name, asked.name) == corpus.name,
                            "relevance": max((s.relevance or 0.0 for s in found), default=None),
                            "parts": [(s.scores.get("vector"), s.scores.get("bm25")) for s in found],
                            "bm25_scale": scale,
                            "seconds": round(seconds, 4),
                        }
                    )
    return {"rows": rows, "alpha": load_config(spec.config, spec.set).retrieval.alpha}


def hybrid_relevance(row: dict[str, Any], weight: float) -> float | None:
    """A row's best hybrid relevance with dense weight ``weight`` instead of retrieval.alpha."""
    best = None
    for cosine, bm25 in row["parts"]:
        scale = row["bm25_scale"]
        share = min(bm25 / scale, 1.0) if bm25 is not None and scale else 0.0
        value = weight * (cosine or 0.0) + (1 - weight) * share
        best = value if best is None else max(best, value)
    return best


def rates(rows: list[dict[str, Any]], threshold: float, key: Any) -> dict[str, float]:
    """Share answered of the answerable questions and abstained of the unanswerable, overall and
    per corpus (worst corpus: what one threshold must meet everywhere)."""
    out: dict[str, float] = {}
    by_corpus: dict[str, list[tuple[bool, bool]]] = {}
    for row in rows:
        value = key(row)
        answered = value is not None and value >= threshold
        by_corpus.setdefault(row["corpus"], []).append((row["answerable"], answered))
    worst_answer, worst_abstain = 1.0, 1.0
    all_pairs = [p for pairs in by_corpus.values() for p in pairs]
    for corpus, pairs in [*by_corpus.items(), ("all", all_pairs)]:
        good = [a for answerable, a in pairs if answerable]
        bad = [a for answerable, a in pairs if not answerable]
        answer = sum(good) / len(good) if good else 1.0
        abstain = 1 - sum(bad) / len(bad) if bad else 1.0
        out[f"{corpus}.answer"], out[f"{corpus}.abstain"] = answer, abstain
        if corpus != "all":
            worst_answer, worst_abstain = min(worst_answer, answer), min(worst_abstain, abstain)
    out["worst.answer"], out["worst.abstain"] = worst_answer, worst_abstain
    return out


def sweep(rows: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
    scales: list[tuple[str, str, Any]] = [
        ("vector", "cosine", lambda r: r["relevance"]),
        ("bm25", "bm25/scale", lambda r: r["relevance"]),
    ]
    for weight in sorted({alpha, 0.4, 0.7, 1.0}):
        scales.append(("hybrid", f"alpha={weight:g}", lambda r, w=weight: hybrid_relevance(r, w)))
    table = []
    for mode, scale, key in scales:
        chosen = [r for r in rows if r["mode"] == mode]
        for step in range(0, 81):
            threshold = round(step * 0.01, 2)
            rated = rates(chosen, threshold, key)
            table.append({"mode": mode, "scale": scale, "threshold": threshold, **rated})
    return table


def best_rows(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per mode and scale: the highest threshold that still answers 95% of the answerable
    questions (of the sets together), since abstaining where the documents hold the answer costs
    the user more than one more invented answer flagged later; ``meets``: whether it also abstains
    on 90% of the unanswerable. ``strong``: the lowest threshold that 99% of the unanswerable
    questions fall below."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    strong: dict[tuple[str, str], float] = {}
    for row in table:  # thresholds ascending
        key = (row["mode"], row["scale"])
        if row["all.answer"] >= GOAL_ANSWER or key not in best:
            best[key] = {
                **row,
                "meets": row["all.answer"] >= GOAL_ANSWER and row["all.abstain"] >= GOAL_ABSTAIN,
            }
        if row["all.abstain"] >= 0.99 and key not in strong:
            strong[key] = row["threshold"]
    return [{**row, "strong": strong.get(key)} for key, row in best.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--json", type=Path, help="Write every question's relevance and the sweep here.")
    parser.add_argument("--rows", type=Path, help="Sweep the questions of an earlier --json, measuring none.")
    add_markdown_flag(parser)
    args = parser.parse_args(argv)

    print(f"CPU: {json.dumps(cpu_description())}", flush=True)
    measured = json.loads(args.rows.read_text()) if args.rows else measure(args.spec)
    table = sweep(measured["rows"], measured["alpha"])
    corpora = sorted({r["corpus"] for r in measured["rows"]})
    head = ["mode", "relevance", "abstain below", *[f"{c} answered / abstained" for c in corpora]]
    head += ["all three", "goal (≥95% / ≥90%)", "strong from"]
    rows = []
    for row in best_rows(table):
        cells = [row["mode"], row["scale"], f"{row['threshold']:.2f}"]
        cells += [f"{row[c + '.answer']:.0%} / {row[c + '.abstain']:.0%}" for c in [*corpora, "all"]]
        cells.append("met" if row["meets"] else "not met")
        cells.append("-" if row["strong"] is None else f"{row['strong']:.2f}")
        rows.append(cells)
    if args.markdown:
        print(markdown_table(head, rows))
    else:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for cells in rows:
            print("| " + " | ".join(cells) + " |")
    latencies = [r["seconds"] for r in measured["rows"]]
    print(f"{len(latencies)} retrievals, median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms")
    if args.json and not args.rows:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**measured, "sweep": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
