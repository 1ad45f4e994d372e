"""Build speed and memory, as ratios measured in the same run.

    python -m benchmarks.build                       # generated corpus, default sizes
    python -m benchmarks.build --corpus DIR          # your own documents
    python -m benchmarks.build --rss-files 2000      # also: peak RSS of a larger build
    python -m benchmarks.build --backend onnx onnx-int8   # also: the ONNX Runtime backends

Reports:
- chunks/s of ``indexer build`` (read, split, hash, embed, write Chroma, manifest) next to a bare
  ``SentenceTransformer.encode`` of the very same chunk texts, same model and batch size; the ratio
  is the share of the embedder's speed the framework keeps (goal >= 0.9);
- an unchanged re-run's time as a share of the full build (goal <= 2%);
- peak RSS of ``indexer build`` subprocesses on two corpus sizes (memory must not grow with it);
- with ``--backend``: each backend's build speed against the default's, query embedding latency,
  and the agreement of its vector-search top-1 / top-5 with the default's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.corpus import WORDS, write_corpus

ROOT = Path(__file__).resolve().parent.parent


def generate(folder: Path, files: int, paragraphs: int, seed: int = 1) -> Path:
    """The tests' generated corpus (one generator for both); a paragraph is about five sentences."""
    write_corpus(folder, files, sentences=5 * paragraphs, seed=seed)
    return folder


def write_config(folder: Path, corpus: Path, batch_size: int, chunk_size: int, **embedding: Any) -> Path:
    config = {
        "data": {"input_dir": str(corpus)},
        "chunking": {"chunk_size": chunk_size, "chunk_overlap": max(0, chunk_size // 8)},
        "embedding": {"batch_size": batch_size, **embedding},
        "vector_store": {"persist_dir": str(folder / "storage"), "collection": "bench"},
        "llm": {"provider": "none"},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def chunk_texts(ix: Any) -> list[str]:
    store = ix.index.chunk_store(create=False)
    got = store._collection.get(include=["documents"])
    return list(got["documents"])


def measure_speed(work: Path, corpus: Path, batch_size: int, chunk_size: int, repeats: int) -> dict[str, Any]:
    from indexer import Indexer

    # Warm-up: load the model, the tokenizer and NLTK's sentence splitter once, outside the timings.
    warm = generate(work / "warm", files=2, paragraphs=2)
    Indexer.from_config(write_config(work / "warm-index", warm, batch_size, chunk_size)).build()

    # Best of ``repeats`` alternating runs of each side: the machine's load moves during a run.
    config = write_config(work / "index", corpus, batch_size, chunk_size)
    build_s = bare_s = float("inf")
    for attempt in range(repeats):
        ix = Indexer.from_config(config)
        started = time.perf_counter()
        summary = ix.build(rebuild=attempt > 0)
        build_s = min(build_s, time.perf_counter() - started)

        texts = chunk_texts(ix)
        model = ix.components.embed_model._model  # the same SentenceTransformer
        started = time.perf_counter()
        model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
        bare_s = min(bare_s, time.perf_counter() - started)

    started = time.perf_counter()
    rerun = Indexer.from_config(config).build()
    rerun_s = time.perf_counter() - started
    assert rerun.chunks_embedded == 0, "an unchanged re-run embedded something"
    return {
        "documents": summary.documents,
        "chunks": summary.chunks,
        "build_s": round(build_s, 2),
        "build_chunks_per_s": round(summary.chunks / build_s, 1),
        "bare_encode_s": round(bare_s, 2),
        "bare_chunks_per_s": round(len(texts) / bare_s, 1),
        "build_vs_bare": round(bare_s / build_s, 3),
        "rerun_s": round(rerun_s, 3),
        "rerun_vs_build": round(rerun_s / build_s, 4),
    }


def measure_rss(work: Path, files: int, paragraphs: int, batch_size: int, chunk_size: int) -> dict[str, Any]:
    """Peak RSS of a real ``indexer build`` process (its own, not this process's), and the time
    an unchanged re-run then takes in a second process."""
    corpus = generate(work / f"rss-{files}", files=files, paragraphs=paragraphs, seed=3)
    config = write_config(work / f"rss-{files}-index", corpus, batch_size, chunk_size)
    script = (
        "import json, resource, sys\n"
        "from indexer import Indexer\n"
        "s = Indexer.from_config(sys.argv[1]).build()\n"
        "print(json.dumps({'chunks': s.chunks, 'seconds': s.seconds,"
        " 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
    )
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", script, str(config)], capture_output=True, text=True, check=True, cwd=ROOT
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    result = {k: round(v, 1) for k, v in runs[0].items()}
    return {"files": files, **result, "rerun_seconds": round(runs[1]["seconds"], 2)}


BACKENDS = {"onnx": {"backend": "onnx"}, "onnx-int8": {"backend": "onnx", "quantization": "int8"}}


def _stored_vectors(ix: Any) -> tuple[list[str], Any]:
    import numpy as np

    got = ix.index.chunk_store(create=False)._collection.get(include=["embeddings"])
    return list(got["ids"]), np.asarray(got["embeddings"])


def measure_backend(
    work: Path, corpus: Path, name: str, batch_size: int, chunk_size: int, default_chunks_per_s: float
) -> dict[str, Any]:
    """A build with another embedding backend: its speed against the default build's, the query
    embedding latency of both, and how far its vector-search results agree with the default's."""
    import statistics

    import numpy as np

    from indexer import Indexer
    from indexer.errors import IndexerError

    vector = {"retrieval.mode": "vector"}
    base_config = work / "index" / "config.yaml"
    config = write_config(work / f"index-{name}", corpus, batch_size, chunk_size, **BACKENDS[name])
    try:
        ix = Indexer.from_config(config, vector)
        ix.components.embed_model  # noqa: B018  (load, and export once, outside the timing)
        started = time.perf_counter()
        summary = ix.build()
        seconds = time.perf_counter() - started
    except IndexerError as exc:
        return {"backend": name, "available": False, "reason": str(exc)}
    default = Indexer.from_config(base_config, vector)
    rng = random.Random(5)
    questions = [" ".join(rng.sample(WORDS[:30], 5)) for _ in range(50)]
    # Agreement by exact search over both indexes' stored vectors: approximate (HNSW) search on two
    # separately built graphs would disagree on near-ties even with identical vectors.
    top1, top5 = [], []
    ids, ours = _stored_vectors(ix)
    theirs = dict(zip(*_stored_vectors(default), strict=True))
    base = np.asarray([theirs[i] for i in ids])
    ours_q = np.asarray([ix.components.query_embed_model.get_query_embedding(q) for q in questions])
    base_q = np.asarray([default.components.query_embed_model.get_query_embedding(q) for q in questions])
    for q_ours, q_base in zip(ours_q, base_q, strict=True):
        a = np.argsort(-(base @ q_base))[:5]
        b = np.argsort(-(ours @ q_ours))[:5]
        top1.append(a[0] == b[0])
        top5.append(len(set(a) & set(b)) / 5)

    def query_ms(engine: Any) -> float:
        embed = engine.components.query_embed_model
        times = []
        for q in questions:
            t0 = time.perf_counter()
            embed.get_query_embedding(q)
            times.append((time.perf_counter() - t0) * 1000)
        return round(statistics.median(times), 2)

    chunks_per_s = summary.chunks / seconds
    torch_queries = Indexer.from_config(base_config, {**vector, "embedding.query_backend": "torch"})
    return {
        "backend": name,
        "available": True,
        "chunks_per_s": round(chunks_per_s, 1),
        "vs_default_build": round(chunks_per_s / default_chunks_per_s, 3),
        "query_embedding_p50_ms": query_ms(ix),
        "torch_query_embedding_p50_ms": query_ms(torch_queries),
        "top1_agreement": round(sum(top1) / len(top1), 3),
        "top5_agreement": round(sum(top5) / len(top5), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, help="a folder of documents (default: generated)")
    parser.add_argument("--files", type=int, default=150, help="generated documents")
    parser.add_argument("--paragraphs", type=int, default=6, help="paragraphs per generated document")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument(
        "--rss-files", type=int, default=0, help="also measure peak RSS at this size and 1/4 of it"
    )
    parser.add_argument(
        "--backend", nargs="+", choices=sorted(BACKENDS), default=[], help="also try these embedding backends"
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side; the best counts")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed comparison (RSS only)")
    args = parser.parse_args()
    if args.no_speed and args.backend:
        parser.error("--backend compares against the speed run's index: drop --no-speed")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    report: dict[str, Any] = {"cpus": len(os.sched_getaffinity(0)), "load_avg": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="indexer-bench-") as tmp:
        work = Path(tmp)
        corpus = args.corpus or generate(work / "corpus", args.files, args.paragraphs)
        if not args.no_speed:
            report["speed"] = measure_speed(work, corpus, args.batch_size, args.chunk_size, args.repeats)
        if args.rss_files:
            small = max(1, args.rss_files // 4)
            report["rss"] = [
                measure_rss(work, n, args.paragraphs, args.batch_size, args.chunk_size)
                for n in (small, args.rss_files)
            ]
        report["backends"] = [
            measure_backend(
                work, corpus, name, args.batch_size, args.chunk_size, report["speed"]["build_chunks_per_s"]
            )
            for name in args.backend
        ]
    report["max_rss_self_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    if args.json:
        print(json.dumps(report))
        return
    print(f"{report['cpus']} CPUs, load {report['load_avg']:.1f}")
    if "speed" in report:
        s = report["speed"]
        print(f"corpus: {s['documents']} documents, {s['chunks']} chunks")
        print(f"indexer build   {s['build_chunks_per_s']:8.1f} chunks/s  ({s['build_s']} s)")
        print(f"bare encode     {s['bare_chunks_per_s']:8.1f} chunks/s  ({s['bare_encode_s']} s)")
        print(f"build / bare    {s['build_vs_bare']:8.3f}   (goal >= 0.9)")
        print(
            f"unchanged rerun {s['rerun_s']:8.3f} s = {100 * s['rerun_vs_build']:.2f}% of the build"
            " (goal <= 2%)"
        )
    for r in report.get("rss", []):
        print(
            f"peak RSS        {r['peak_rss_mb']:8.1f} MB for {r['chunks']:.0f} chunks ({r['files']} files,"
            f" {r['seconds']} s; unchanged re-run {r['rerun_seconds']} s)"
        )
    for b in report["backends"]:
        if not b["available"]:
            print(f"{b['backend']:<15} unavailable: {b['reason']}")
            continue
        print(
            f"{b['backend']:<15} {b['chunks_per_s']:8.1f} chunks/s = {b['vs_default_build']:.2f} of the"
            f" default build; question embedding p50 {b['query_embedding_p50_ms']} ms (torch:"
            f" {b['torch_query_embedding_p50_ms']} ms); exact-search agreement with the default:"
            f" top-1 {b['top1_agreement']}, top-5 {b['top5_agreement']}"
        )


if __name__ == "__main__":
    main()
