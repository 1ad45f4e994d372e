"""Reduced number formats and int8 against float32: same retrieval, and how much faster.

    python -m benchmarks.embedding_dtype                  # msmarco subset, every CPU variant
    python -m benchmarks.embedding_dtype --limit 1000     # fewer passages, quicker
    python -m benchmarks.embedding_dtype --device cuda    # float32 against float16 on a GPU
    python -m benchmarks.embedding_dtype --variants float16   # float16's numbers, on this CPU

On ``../shared/data/msmarco_subset`` (5,000 passages, 50 queries, 43 judged) every variant embeds
the corpus and the queries; exact search (no HNSW, whose near-ties would blur the comparison) ranks
the passages for each query. Reported per variant, against float32 measured in the same run:

- passages/s and the speed ratio (best of ``--rounds`` alternating runs, as the load moves);
- min and mean cosine of each passage vector to its float32 vector;
- top-10 agreement: the overlap of the two top-10 lists, averaged over all 50 queries, with
  queries and passages both in the variant, and mixed (variant passages, float32 queries, and the
  reverse): the case of an index built in one format and questioned in another;
- nDCG@10 on the 43 judged queries.

Variants: ``float32`` (torch, the reference); the format ``embedding.dtype: auto`` picks (bfloat16
on a CPU with AMX or AVX512-BF16, float16 on CUDA), as the project runs it (torch.autocast around
the transformer); ``bfloat16-weights``, the alternative mechanism (every weight converted with
``.to(torch.bfloat16)``); ``onnx`` (float32 in onnxruntime, how questions are embedded on a CPU) and
``onnx-int8`` (``backend: onnx, quantization: int8``; dynamic int8, which uses VNNI).

Top-10 agreement >= 0.99 is the bar for "the same vector space": indexes and questions may then mix
the formats, and the manifest records the dtype without checking it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.machine import add_markdown_flag, markdown_table

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "msmarco_subset"
AGREEMENT_GOAL = 0.99
TOP_K = 10


def load_data(
    folder: Path, limit: int | None
) -> tuple[list[str], list[str], list[str], dict[str, dict[str, int]]]:
    """Passage ids and texts, every query's text, and the judged queries' graded relevance."""
    from indexer.eval.datasets import load_dataset, read_corpus

    records = list(read_corpus(folder / "corpus.jsonl"))
    judged = load_dataset(folder, queries="queries.judged.jsonl", qrels="qrels/test.normalized.tsv")
    qrels = {q.question: q.qrels for q in judged.questions}
    if limit is not None:
        # Keep every judged passage, so nDCG stays meaningful on a smaller corpus.
        wanted = {doc for judged_docs in qrels.values() for doc in judged_docs}
        keep = [r for r in records if r.id in wanted]
        rest = [r for r in records if r.id not in wanted]
        records = (keep + rest)[: max(limit, 1)] if limit < len(keep) else keep + rest[: limit - len(keep)]
    ids = [r.id for r in records]
    texts = [f"{r.title}\n{r.text}" if r.title else r.text for r in records]
    queries = [
        json.loads(line)["text"] for line in (folder / "queries.jsonl").read_text().splitlines() if line
    ]
    return ids, texts, queries, qrels


class Variant:
    """One way of embedding: passages in batches (timed) and queries one at a time."""

    def __init__(self, name: str, passages: Callable[[list[str]], Any], query: Callable[[str], Any]) -> None:
        self.name = name
        self.passages = passages
        self.query = query


def project_variant(name: str, batch_size: int, **settings: Any) -> Variant:
    """The project's own loading and passage path (``Embedder.embed``)."""
    import numpy as np

    from indexer.components.embedding import load_embedder
    from indexer.config.models import EmbeddingConfig

    embedder = load_embedder(EmbeddingConfig(batch_size=batch_size, **settings))
    return Variant(
        name,
        embedder.embed,
        lambda q: np.asarray(embedder.embed_query(q), dtype=np.float32),
    )


def converted_weights_variant(batch_size: int) -> Variant:
    """The mechanism not chosen: the whole model converted to bfloat16, LayerNorm and softmax too."""
    import torch
    from sentence_transformers import SentenceTransformer

    from indexer.components.embedding import resolve_model_location

    location = resolve_model_location("default")
    model = SentenceTransformer(location, device="cpu", local_files_only=True).to(torch.bfloat16)

    def encode(texts: list[str]) -> Any:
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)

    return Variant("bfloat16-weights", encode, lambda q: encode([q])[0])


def build_variants(names: list[str], device: str, batch_size: int) -> list[Variant]:
    from indexer.components.embedding import resolve_dtype
    from indexer.config.models import EmbeddingConfig

    fast, _ = resolve_dtype(EmbeddingConfig(device=device))
    made = []
    for name in names:
        if name == "float32":
            made.append(project_variant(name, batch_size, device=device, dtype="float32"))
        elif name == "fast":
            if fast == "float32":
                print(f"skipped fast: dtype auto picks float32 on device {device}")
                continue
            made.append(project_variant(fast, batch_size, device=device, dtype=fast))
        elif name in ("bfloat16", "float16"):
            # A format set explicitly, whatever auto picks: e.g. float16's numbers on a CPU.
            made.append(project_variant(name, batch_size, device=device, dtype=name))
        elif name == "bfloat16-weights":
            made.append(converted_weights_variant(batch_size))
        elif name == "onnx":
            made.append(project_variant(name, batch_size, backend="onnx"))
        elif name == "onnx-int8":
            made.append(project_variant(name, batch_size, backend="onnx", quantization="int8"))
    return made


def top_k(passages: Any, queries: Any) -> Any:
    import numpy as np

    scores = queries @ passages.T
    best = np.argpartition(-scores, TOP_K, axis=1)[:, :TOP_K]
    order = np.take_along_axis(scores, best, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(best, order, axis=1)


def agreement(a: Any, b: Any) -> float:
    return float(sum(len(set(x) & set(y)) / TOP_K for x, y in zip(a, b, strict=True)) / len(a))


def ndcg(ranked: Any, ids: list[str], queries: list[str], qrels: dict[str, dict[str, int]]) -> float:
    from indexer.eval.metrics import ndcg_at_k

    scores = [
        ndcg_at_k([ids[i] for i in row], qrels[q], TOP_K)
        for q, row in zip(queries, ranked, strict=True)
        if q in qrels
    ]
    return sum(scores) / len(scores)


def measure(variants: list[Variant], texts: list[str], queries: list[str], rounds: int) -> dict[str, Any]:
    """Every variant's vectors and its best encode time, the variants taking turns each round
    (reversed every other round), so a change in the machine's load reaches them all alike."""
    import numpy as np

    seconds: dict[str, float] = {v.name: float("inf") for v in variants}
    passages: dict[str, Any] = {}
    question_vectors: dict[str, Any] = {}
    for v in variants:  # warm-up: first-call allocations, oneDNN kernel selection
        v.passages(texts[:64])
    for attempt in range(rounds):
        for v in variants if attempt % 2 == 0 else variants[::-1]:
            started = time.perf_counter()
            vectors = np.asarray(v.passages(texts), dtype=np.float32)
            seconds[v.name] = min(seconds[v.name], time.perf_counter() - started)
            passages.setdefault(v.name, vectors)
            print(f"  round {attempt + 1}: {v.name:<17} {time.perf_counter() - started:7.1f} s", flush=True)
    for v in variants:
        question_vectors[v.name] = np.asarray([v.query(q) for q in queries], dtype=np.float32)
    return {"seconds": seconds, "passages": passages, "queries": question_vectors}


def compare(
    measured: dict[str, Any], ids: list[str], queries: list[str], qrels: dict[str, dict[str, int]]
) -> list[dict[str, Any]]:
    import numpy as np

    p, q, s = measured["passages"], measured["queries"], measured["seconds"]
    ref = "float32"
    reference = top_k(p[ref], q[ref])
    rows = []
    for name in p:
        cos = (p[name] * p[ref]).sum(axis=1) / (
            np.linalg.norm(p[name], axis=1) * np.linalg.norm(p[ref], axis=1)
        )
        own = top_k(p[name], q[name])
        rows.append(
            {
                "variant": name,
                "passages_per_s": round(len(ids) / s[name], 1),
                "seconds": round(s[name], 2),
                "speed_vs_float32": round(s[ref] / s[name], 2),
                "min_cosine": round(float(cos.min()), 5),
                "mean_cosine": round(float(cos.mean()), 6),
                "top10_agreement": round(agreement(own, reference), 4),
                "top10_agreement_passages_only": round(agreement(top_k(p[name], q[ref]), reference), 4),
                "top10_agreement_queries_only": round(agreement(top_k(p[ref], q[name]), reference), 4),
                "ndcg10": round(ndcg(own, ids, queries, qrels), 4),
            }
        )
    return rows


def main() -> None:
    from benchmarks.machine import cpu_description

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a BEIR folder (msmarco_subset)")
    parser.add_argument("--limit", type=int, help="passages to embed (judged ones first; default all)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating encodes of each variant; best counts"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: float32 against float16 only")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=None,
        choices=["float32", "fast", "bfloat16", "float16", "bfloat16-weights", "onnx", "onnx-int8"],
        help="default on a CPU: float32 fast bfloat16-weights onnx-int8; on CUDA: float32 fast",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    add_markdown_flag(parser)
    args = parser.parse_args()
    if not (args.data / "corpus.jsonl").is_file():
        parser.error(f"no BEIR corpus at {args.data}: pass --data (../shared/data/msmarco_subset)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    on_cpu = args.device == "cpu"
    names = args.variants or (
        ["float32", "fast", "bfloat16-weights", "onnx-int8"] if on_cpu else ["float32", "fast"]
    )
    if "float32" not in names:
        names = ["float32", *names]

    report: dict[str, Any] = {"cpu": cpu_description(), "device": args.device}
    if not on_cpu:
        import torch

        report["gpu"] = torch.cuda.get_device_name(0)
    print(json.dumps({k: v for k, v in report.items()}), flush=True)
    ids, texts, queries, qrels = load_data(args.data, args.limit)
    print(f"{len(texts)} passages, {len(queries)} queries ({len(qrels)} judged), batch {args.batch_size}")
    variants = build_variants(names, args.device, args.batch_size)
    rows = compare(measure(variants, texts, queries, args.rounds), ids, queries, qrels)
    report["passages"], report["queries"], report["variants"] = len(texts), len(queries), rows

    print(
        f"\n{'variant':<17} {'passages/s':>10} {'vs fp32':>8} {'min cos':>8} {'top-10 agreement':>17}"
        f" {'(passages/queries only)':>24} {'nDCG@10':>8}"
    )
    for r in rows:
        print(
            f"{r['variant']:<17} {r['passages_per_s']:>10.1f} {r['speed_vs_float32']:>7.2f}x"
            f" {r['min_cosine']:>8.5f}"
            f" {r['top10_agreement']:>17.4f} {r['top10_agreement_passages_only']:>11.4f} /"
            f" {r['top10_agreement_queries_only']:<11.4f} {r['ndcg10']:>8.4f}"
        )
    for r in rows:
        if r["variant"] in ("bfloat16", "float16"):
            worst = min(
                r["top10_agreement"], r["top10_agreement_passages_only"], r["top10_agreement_queries_only"]
            )
            same = worst >= AGREEMENT_GOAL
            print(
                f"\n{r['variant']} vs float32: lowest top-10 agreement {worst:.4f}"
                f" (goal >= {AGREEMENT_GOAL}): "
                + (
                    "the same vector space"
                    if same
                    else "NOT the same vector space: the manifest must check dtype"
                )
            )
    if args.json:
        print(json.dumps(report))
    if args.markdown:
        table = [
            [
                r["variant"],
                round(r["passages_per_s"], 1),
                round(r["speed_vs_float32"], 2),
                round(r["min_cosine"], 5),
                f"{r['top10_agreement_passages_only']:.3f} / {r['top10_agreement_queries_only']:.3f}",
                round(r["ndcg10"], 4),
            ]
            for r in rows
        ]
        columns = [
            "variant",
            "passages/s",
            "vs float32",
            "min cosine to float32",
            "top-10 agreement (own questions / float32 questions)",
            "nDCG@10",
        ]
        print(markdown_table(columns, table, report.get("gpu")))


if __name__ == "__main__":
    main()
