"""Vector search recall: Chroma's HNSW top-10 against exact search, and what better recall costs.

    python -m benchmarks.hnsw_recall                         # 1k and 100k vectors
    python -m benchmarks.hnsw_recall --sizes 1000 --queries 100
    python -m benchmarks.hnsw_recall --data uniform          # the hard case: no structure at all

For each size, the same vectors go into one embedded Chroma collection per HNSW setting (Chroma's
defaults, and indexer's ``vector_store.hnsw`` defaults), through the same code path a build uses
(``index.chroma.get_collection``). Every query is answered by the collection and by
exact search (numpy, all dot products) in the same run; recall@10 is the share of the exact top 10
that the collection returned. Latency is one ``collection.query`` per question, as a retrieval
makes it, after one warm-up query.

Vectors are 384-dimensional unit vectors (MiniLM's size). ``clustered`` (default): 500 random
centres plus Gaussian noise, normalised, which resembles embeddings of real text; questions are
near, not at, stored vectors. ``uniform``: random directions, the worst case for any graph index.
Embedding 100k real chunks would take most of an hour on 2 cores and measure the same thing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.machine import add_markdown_flag, markdown_table

DIMENSION = 384
TOP_K = 10
# None: the collection is created as indexer did before vector_store.hnsw existed, with only the
# legacy metadata {"hnsw:space": "cosine"} and Chroma's defaults for everything else.
BEFORE = None


def make_vectors(n: int, queries: int, data: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if data == "uniform":
        points = rng.standard_normal((n + queries, DIMENSION), dtype=np.float32)
    else:
        centres = rng.standard_normal((500, DIMENSION), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        picks = rng.integers(0, len(centres), n + queries)
        points = centres[picks] + rng.standard_normal((n + queries, DIMENSION), dtype=np.float32) * 0.05
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points[:n], points[n:]


def exact_top_k(vectors: np.ndarray, questions: np.ndarray) -> list[set[int]]:
    found = []
    for q in questions:
        scores = vectors @ q
        top = np.argpartition(-scores, TOP_K)[:TOP_K]
        found.append(set(top.tolist()))
    return found


def measure(
    vectors: np.ndarray,
    questions: np.ndarray,
    exact: list[set[int]],
    hnsw: dict[str, int] | None,
    folder: str,
    sweep_ef: list[int] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient
    from chromadb.config import Settings

    from indexer.config.models import VectorStoreConfig
    from indexer.index.chroma import get_collection, hnsw_settings

    client = chromadb.PersistentClient(path=folder, settings=Settings(anonymized_telemetry=False))
    if hnsw is None:
        collection = client.create_collection("bench", metadata={"hnsw:space": "cosine"})
    else:
        config = VectorStoreConfig(persist_dir=folder, collection="bench", hnsw=hnsw)
        collection = get_collection(client, config, create=True)
    assert collection is not None
    batch = client.get_max_batch_size()
    started = time.perf_counter()
    for at in range(0, len(vectors), batch):
        part = vectors[at : at + batch]
        collection.add(ids=[str(i) for i in range(at, at + len(part))], embeddings=part)
    insert_s = time.perf_counter() - started
    result = {"settings": hnsw_settings(collection), "insert_s": insert_s}
    result.update(search(collection, questions, exact))
    sweep = []
    for ef in sweep_ef:
        # A process keeps the HNSW index it loaded, search_ef included: reopen, as a new process would.
        collection.modify(configuration={"hnsw": {"ef_search": ef}})
        SharedSystemClient.clear_system_cache()
        client = chromadb.PersistentClient(path=folder, settings=Settings(anonymized_telemetry=False))
        sweep.append({"search_ef": ef, **search(client.get_collection("bench"), questions, exact)})
    result["sweep"] = sweep
    SharedSystemClient.clear_system_cache()
    return result


def search(collection: Any, questions: np.ndarray, exact: list[set[int]]) -> dict[str, float]:
    collection.query(query_embeddings=[questions[0]], n_results=TOP_K)  # warm-up: loads the index
    latencies, hits = [], 0
    for q, truth in zip(questions, exact, strict=True):
        t = time.perf_counter()
        got = collection.query(query_embeddings=[q], n_results=TOP_K, include=[])
        latencies.append((time.perf_counter() - t) * 1000)
        hits += len(truth & {int(i) for i in got["ids"][0]})
    latencies.sort()
    return {
        "recall": hits / (TOP_K * len(questions)),
        "p50_ms": statistics.median(latencies),
        "p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--data", choices=["clustered", "uniform"], default="clustered")
    parser.add_argument(
        "--sweep", type=int, nargs="*", default=[], help="search_ef values to re-measure indexer's graph with"
    )
    parser.add_argument("--skip-before", action="store_true", help="only indexer's settings")
    add_markdown_flag(parser)
    args = parser.parse_args()
    table: list[list[object]] = []

    from benchmarks.machine import cpu_description
    from indexer.config.models import HnswConfig

    ours = HnswConfig().model_dump()
    print(json.dumps({"cpu": cpu_description()}))
    print(f"data: {args.data}, dimension {DIMENSION}, {args.queries} questions, recall@{TOP_K} vs exact")
    for n in args.sizes:
        vectors, questions = make_vectors(n, args.queries, args.data)
        started = time.perf_counter()
        exact = exact_top_k(vectors, questions)
        exact_ms = (time.perf_counter() - started) * 1000 / len(questions)
        print(f"\n{n} vectors (exact search, numpy: {exact_ms:.2f} ms/question)")
        results = {}
        variants = [("before (legacy)", BEFORE, [])] if not args.skip_before else []
        variants.append(("indexer defaults", ours, args.sweep))
        for label, hnsw, sweep in variants:
            with tempfile.TemporaryDirectory(prefix="hnsw-bench-") as folder:
                results[label] = r = measure(vectors, questions, exact, hnsw, folder, sweep)
            s = r["settings"]
            print(
                f"  {label:17} search_ef {s.get('search_ef')}, construction_ef {s.get('construction_ef')}, "
                f"m {s.get('m')}: recall@{TOP_K} {r['recall']:.4f}, query p50 {r['p50_ms']:.2f} ms, "
                f"p95 {r['p95_ms']:.2f} ms, insert {r['insert_s']:.1f} s"
            )
        new = results["indexer defaults"]
        for point in new["sweep"]:
            print(
                f"    same graph, search_ef {point['search_ef']}: recall@{TOP_K} {point['recall']:.4f}, "
                f"query p50 {point['p50_ms']:.2f} ms, p95 {point['p95_ms']:.2f} ms"
            )
        if "before (legacy)" in results:
            base = results["before (legacy)"]
            print(
                f"  ratio indexer/before: query p50 x{new['p50_ms'] / base['p50_ms']:.2f}, "
                f"insert x{new['insert_s'] / base['insert_s']:.2f}"
            )
        old = results.get("before (legacy)")
        table.append(
            [
                f"{n:,}",
                args.data,
                f"{old['recall']:.3f}, {old['p50_ms']:.1f} ms" if old else None,
                f"{new['recall']:.3f}, {new['p50_ms']:.1f} ms",
                f"{old['insert_s']:.1f} s → {new['insert_s']:.1f} s" if old else f"{new['insert_s']:.1f} s",
            ]
        )
    if args.markdown:
        columns = [
            "vectors",
            "data",
            "before (legacy): recall@10, query p50",
            "indexer defaults: recall@10, query p50",
            "insert time, before → now",
        ]
        print(markdown_table(columns, table))


if __name__ == "__main__":
    main()
