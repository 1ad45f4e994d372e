"""Build speed and memory, as ratios measured in the same run.

    python -m benchmarks.build                       # generated corpus, default sizes
    python -m benchmarks.build --corpus DIR          # your own documents
    python -m benchmarks.build --rss-files 2000      # also: peak RSS of a larger build
    python -m benchmarks.build --backend onnx        # also: a faster embedding backend, if usable

Reports:
- chunks/s of ``indexer build`` (read, split, hash, embed, write Chroma, manifest) next to a bare
  ``SentenceTransformer.encode`` of the very same chunk texts, same model and batch size; the ratio
  is the share of the embedder's speed the framework keeps (goal >= 0.9);
- an unchanged re-run's time as a share of the full build (goal <= 2%);
- peak RSS of ``indexer build`` subprocesses on two corpus sizes (memory must not grow with it);
- with ``--backend``: that backend's speed and its top-k agreement with the default.
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
    store = ix.components.chunk_store(create=False)
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
    """Peak RSS of a real ``indexer build`` process (its own, not this process's)."""
    corpus = generate(work / f"rss-{files}", files=files, paragraphs=paragraphs, seed=3)
    config = write_config(work / f"rss-{files}-index", corpus, batch_size, chunk_size)
    script = (
        "import json, resource, sys\n"
        "from indexer import Indexer\n"
        "s = Indexer.from_config(sys.argv[1]).build()\n"
        "print(json.dumps({'chunks': s.chunks, 'seconds': s.seconds,"
        " 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(config)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"files": files, **{k: round(v, 1) for k, v in result.items()}}


def measure_backend(
    work: Path, corpus: Path, backend: str, batch_size: int, chunk_size: int
) -> dict[str, Any]:
    from indexer import Indexer
    from indexer.errors import IndexerError

    base_config = work / "index" / "config.yaml"
    config = write_config(work / f"index-{backend}", corpus, batch_size, chunk_size, backend=backend)
    try:
        ix = Indexer.from_config(config)
        started = time.perf_counter()
        summary = ix.build()
        seconds = time.perf_counter() - started
    except IndexerError as exc:
        return {"backend": backend, "available": False, "reason": str(exc)}
    default = Indexer.from_config(base_config)
    rng = random.Random(5)
    questions = [" ".join(rng.sample(WORDS[:30], 5)) for _ in range(50)]
    overlap = []
    for q in questions:
        a = {s.chunk_id for s in default.retrieve(q, top_k=5)}
        b = {s.chunk_id for s in ix.retrieve(q, top_k=5)}
        overlap.append(len(a & b) / 5)
    return {
        "backend": backend,
        "available": True,
        "chunks_per_s": round(summary.chunks / seconds, 1),
        "top5_agreement": round(sum(overlap) / len(overlap), 3),
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
    parser.add_argument("--backend", choices=["onnx", "openvino"], help="also try this embedding backend")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side; the best counts")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    report: dict[str, Any] = {"cpus": len(os.sched_getaffinity(0)), "load_avg": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="indexer-bench-") as tmp:
        work = Path(tmp)
        corpus = args.corpus or generate(work / "corpus", args.files, args.paragraphs)
        report["speed"] = measure_speed(work, corpus, args.batch_size, args.chunk_size, args.repeats)
        if args.rss_files:
            small = max(1, args.rss_files // 4)
            report["rss"] = [
                measure_rss(work, n, args.paragraphs, args.batch_size, args.chunk_size)
                for n in (small, args.rss_files)
            ]
        if args.backend:
            report["backend"] = measure_backend(work, corpus, args.backend, args.batch_size, args.chunk_size)
    report["max_rss_self_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    if args.json:
        print(json.dumps(report))
        return
    s = report["speed"]
    where = f"{report['cpus']} CPUs, load {report['load_avg']:.1f}"
    print(f"corpus: {s['documents']} documents, {s['chunks']} chunks ({where})")
    print(f"indexer build   {s['build_chunks_per_s']:8.1f} chunks/s  ({s['build_s']} s)")
    print(f"bare encode     {s['bare_chunks_per_s']:8.1f} chunks/s  ({s['bare_encode_s']} s)")
    print(f"build / bare    {s['build_vs_bare']:8.3f}   (goal >= 0.9)")
    print(
        f"unchanged rerun {s['rerun_s']:8.3f} s = {100 * s['rerun_vs_build']:.2f}% of the build (goal <= 2%)"
    )
    for r in report.get("rss", []):
        print(f"peak RSS        {r['peak_rss_mb']:8.1f} MB for {r['chunks']:.0f} chunks ({r['files']} files)")
    if "backend" in report:
        b = report["backend"]
        if b["available"]:
            print(
                f"{b['backend']:<15} {b['chunks_per_s']:8.1f} chunks/s, top-5 agreement {b['top5_agreement']}"
            )
        else:
            print(f"{b['backend']:<15} unavailable: {b['reason']}")


if __name__ == "__main__":
    main()
