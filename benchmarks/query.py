"""Query speed: retrieval latency per mode at 10k and 100k chunks, and generation through our engine
against llama.cpp called directly.

    python -m benchmarks.query                  # both parts, tiny test GGUF for generation
    python -m benchmarks.query --sizes 10000    # retrieval at one size only
    python -m benchmarks.query --model my.gguf  # generation with a real model

Retrieval: embedding 100k chunks with MiniLM on 2 cores takes most of an hour, so the corpus is
synthetic and its vectors are made, not embedded: 500 synthetic passages are embedded for real,
and every chunk's vector is one of them plus Gaussian noise, normalised (clustered like real text,
unlike uniform random vectors). Texts are built from a vocabulary with part numbers and error
codes, so BM25 has realistic term statistics. The chunks, a manifest and the keyword index are
written as a build would, and every latency is a full ``Indexer.retrieve`` call: query embedding,
search, fusion and result assembly.

Generation: the same rendered prompt, sampling settings and token budget through
``Indexer.stream`` and through ``llama_cpp.Llama.create_completion`` on a second instance; both
start from an empty KV cache each run. Reported: tokens/s (first token to last), their ratio, and
time to first token (the engine's includes retrieval).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.machine import add_markdown_flag, markdown_table

MODES = ("vector", "bm25", "hybrid")
# Passages embedded for real; every chunk vector is one of them plus noise.
_BASE_TEXTS = 500
WORDS = [
    "sensor",
    "logger",
    "mast",
    "battery",
    "solar",
    "regulator",
    "cable",
    "antenna",
    "gauge",
    "rain",
    "wind",
    "anemometer",
    "humidity",
    "pressure",
    "firmware",
    "update",
    "calibration",
    "bracket",
    "housing",
    "connector",
    "seal",
    "fuse",
    "board",
    "reset",
    "clock",
    "drift",
    "voltage",
    "alarm",
    "threshold",
    "interval",
    "report",
    "upload",
    "modem",
    "signal",
    "storage",
    "card",
    "replace",
    "check",
    "clean",
    "inspect",
    "tighten",
    "monthly",
    "yearly",
    "station",
    "field",
    "technician",
    "manual",
    "warranty",
    "spare",
    "kit",
]


def _text(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(60, 120))]
    words.insert(rng.randrange(len(words)), f"AUR-{rng.randint(1000, 9999)}-{rng.choice('XYZW')}")
    words.insert(rng.randrange(len(words)), f"E-{rng.randint(100, 999)}")
    return " ".join(words).capitalize() + "."


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def retrieval(size: int, folder: Path, queries: int) -> dict[str, Any]:

    from indexer import Indexer

    data = folder / "docs"
    data.mkdir(parents=True, exist_ok=True)
    (data / "placeholder.txt").write_text("unused: the chunks are written directly")
    config = folder / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"input_dir": str(data)},
                "vector_store": {"persist_dir": str(folder / "storage"), "collection": "bench"},
                "llm": {"provider": "none"},
            }
        )
    )
    ix = Indexer.from_config(config)
    rng = random.Random(size)
    result: dict[str, Any] = {"chunks": size}
    if ix.index.manifest_file.load() is None:  # else kept from an earlier run (--workdir)
        result.update(_write_corpus(ix, size, rng))
    return {**result, **_measure(config, rng, queries)}


def _write_corpus(ix: Any, size: int, rng: random.Random) -> dict[str, Any]:
    """Synthetic chunks with clustered vectors, written through the index's own writer (so the
    keyword index is filled as a build fills it)."""
    import numpy as np

    from indexer.index.index import Written
    from indexer.index.manifest import Manifest
    from indexer.index.store import Chunk

    base_texts = [_text(rng) for _ in range(_BASE_TEXTS)]
    base = np.asarray(ix.components.embedder.embed(base_texts), dtype=np.float32)
    noise = np.random.default_rng(size)
    identity = ix.components.embedder.identity.record()
    per_file = 10
    started = time.perf_counter()
    with ix.index.writer() as writer:
        writer.begin(
            rebuild=False,
            fresh=lambda collection, generation: Manifest(
                embedding=identity,
                chunking=ix.config.chunking.model_dump(),
                loader={},
                collection=collection,
                generation=generation,
            ),
        )
        for start in range(0, size, 5000):
            picks = [rng.randrange(len(base_texts)) for _ in range(min(5000, size - start))]
            vectors = base[picks] + noise.normal(0, 0.03, (len(picks), base.shape[1])).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            docs: dict[str, Written] = {}
            for offset, vector in enumerate(vectors):
                i = start + offset
                doc, n = f"doc{i // per_file:05d}.txt", i % per_file
                text = _text(rng)  # unique: real corpora do not repeat chunks word for word
                meta = {"doc_id": doc, "file": doc, "file_hash": f"h{i // per_file}", "chunk": n}
                written = docs.setdefault(doc, Written(doc, f"h{i // per_file}", 1, [], []))
                written.chunks.append(Chunk(id=f"{doc}::{n}", text=text, metadata=meta))
                written.vectors.append(vector)
            for written in docs.values():
                written.vectors = np.asarray(written.vectors)
            writer.write(list(docs.values()))
        writer.finish()
    return {
        "insert_s": round(time.perf_counter() - started, 1),
        "keyword_write_s": round(writer.seconds["keyword"], 1),
    }


def _measure(config: Path, rng: random.Random, queries: int) -> dict[str, Any]:
    from indexer import Indexer

    questions = [
        "How often should the rain gauge be cleaned?",
        "battery voltage alarm threshold",
        "firmware update after a clock drift",
        "Which kit replaces the antenna cable?",
    ]
    questions += [f"AUR-{rng.randint(1000, 9999)}-X" for _ in range(4)] + ["E-214 modem signal"]
    result: dict[str, Any] = {}
    for name, backend in (("query_embedding_p50_ms", "auto"), ("query_embedding_torch_p50_ms", "torch")):
        embed = Indexer.from_config(config, {"embedding.query_backend": backend}).components.query_embedder
        embed.embed_query(questions[0])
        embed_times = []
        for q in questions * 3:
            t0 = time.perf_counter()
            embed.get_query_embedding(q)
            embed_times.append((time.perf_counter() - t0) * 1000)
        result[name] = round(statistics.median(embed_times), 1)
    # Each mode with the default settings (questions through onnxruntime, convex fusion), vector
    # search with questions through torch, and hybrid with reciprocal rank fusion (which fetches
    # fewer hits per side) for comparison.
    variants = {mode: {"retrieval.mode": mode} for mode in MODES}
    variants["vector+torch"] = {"retrieval.mode": "vector", "embedding.query_backend": "torch"}
    variants["hybrid+rrf"] = {"retrieval.mode": "hybrid", "retrieval.fusion": "rrf"}
    for name, overrides in variants.items():
        engine = Indexer.from_config(config, overrides)
        for q in questions[:3]:  # warm up: model, collection, keyword index loaded
            engine.retrieve(q, top_k=4)
        times = []
        for n in range(queries):
            q = questions[n % len(questions)] + ("" if n < len(questions) else f" {rng.choice(WORDS)}")
            t0 = time.perf_counter()
            engine.retrieve(q, top_k=4)
            times.append((time.perf_counter() - t0) * 1000)
        result[name] = {
            "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(_percentile(times, 0.95), 1),
        }
    return result


def generation(
    model: Path | None, folder: Path, runs: int, max_tokens: int, top_k: int = 2
) -> dict[str, Any]:
    import llama_cpp

    from indexer import Indexer
    from indexer.cpu import cpu_count
    from indexer.query.engine import QueryEngine
    from tests.conftest import SAMPLE_DIR, write_config

    folder.mkdir(parents=True, exist_ok=True)
    if model is None:
        from tests.support.tiny_gguf import write_tiny_llama_gguf

        model = write_tiny_llama_gguf(folder / "tiny.gguf", n_ctx_train=8192)
    elif str(model).startswith("bundled:"):
        from indexer.components.llm import bundled_model_path

        model = bundled_model_path(str(model).removeprefix("bundled:"))
    config = write_config(folder, SAMPLE_DIR, model_path=model)
    overrides = {"llm.n_ctx": 8192, "llm.max_new_tokens": max_tokens, "llm.temperature": 0.1}
    ix = Indexer.from_config(config, overrides)
    ix.build()
    # A question with a long answer: tokens/s needs many tokens, and a real model stops by itself.
    question = (
        "List every maintenance task the passages mention and how often each one is done, in full sentences."
    )
    llm = ix.components.llm
    assert llm is not None
    engine = QueryEngine(ix.components, ix.index)
    prompt = llm.render(engine.messages(question, ix.retrieve(question, top_k=top_k)))
    cfg = ix.config.llm
    threads = cfg.n_threads or cpu_count()
    direct = llama_cpp.Llama(
        model_path=str(model), n_ctx=cfg.n_ctx, n_threads=threads, n_threads_batch=threads,
        n_gpu_layers=cfg.n_gpu_layers, n_batch=cfg.n_batch, n_ubatch=cfg.n_batch,
        flash_attn=cfg.flash_attn, seed=cfg.seed, verbose=False,
    )  # fmt: skip

    def timed(pieces: Any, t0: float) -> tuple[float, float, int]:
        first, count = None, 0
        for _ in pieces:
            count += 1
            first = first or time.perf_counter()
        end = time.perf_counter()
        assert first is not None
        return first - t0, (count - 1) / max(end - first, 1e-9), count

    ours, theirs = [], []
    for _ in range(runs):
        llm.llama.reset()
        t0 = time.perf_counter()
        stream = ix.stream(question, top_k=top_k)
        ours.append(timed(iter(stream), t0))
        direct.reset()
        t0 = time.perf_counter()
        chunks = direct.create_completion(
            prompt=prompt.tokens, max_tokens=max_tokens, temperature=llm.temperature, top_p=cfg.top_p,
            seed=cfg.seed, stop=prompt.stop, stream=True,
        )  # fmt: skip
        theirs.append(timed(chunks, t0))
    ours_rate = statistics.median(r for _, r, _ in ours)
    theirs_rate = statistics.median(r for _, r, _ in theirs)
    return {
        "model": model.name,
        "top_k": top_k,
        "prompt_tokens": len(prompt.tokens),
        "tokens_generated": [c for _, _, c in ours],
        "engine_tokens_per_s": round(ours_rate, 1),
        "direct_tokens_per_s": round(theirs_rate, 1),
        "ratio": round(ours_rate / theirs_rate, 3),
        "engine_ttft_ms": round(statistics.median(t for t, _, _ in ours) * 1000, 1),
        "direct_ttft_ms": round(statistics.median(t for t, _, _ in theirs) * 1000, 1),
    }


def main() -> None:
    from benchmarks.machine import cpu_description

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument(
        "--model", type=Path, default=None, help="GGUF for generation (default: tiny test model)"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--top-k", type=int, default=2, help="passages in the generation prompt")
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument(
        "--workdir", type=Path, help="keep the synthetic indexes here and reuse them on the next run"
    )
    add_markdown_flag(parser)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    report: dict[str, Any] = {"cpu": cpu_description(), "retrieval": []}
    print(json.dumps({"cpu": report["cpu"]}), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        work = args.workdir or Path(tmp)
        for size in args.sizes:
            report["retrieval"].append(retrieval(size, work / f"r{size}", args.queries))
            print(json.dumps(report["retrieval"][-1]), flush=True)
        if not args.skip_generation:
            report["generation"] = generation(
                args.model, Path(tmp) / "gen", args.runs, args.max_tokens, args.top_k
            )
            print(json.dumps(report["generation"]), flush=True)
    print(json.dumps(report, indent=2))
    if args.markdown:
        print_markdown(report)


def print_markdown(report: dict[str, Any]) -> None:
    rows = []
    for run in report["retrieval"]:
        for mode, figures in run.items():
            if isinstance(figures, dict) and "p50_ms" in figures:
                rows.append(
                    [
                        f"{run.get('chunks', '?'):,}",
                        mode,
                        f"{figures['p50_ms']} ms",
                        f"{figures['p95_ms']} ms",
                    ]
                )
    if rows:
        print(markdown_table(["chunks", "mode", "p50", "p95"], rows))
    g = report.get("generation")
    if g:
        row = [
            g["model"],
            f"{g['prompt_tokens']:,} tokens (top_k {g['top_k']})",
            f"{g['engine_tokens_per_s']} tokens/s",
            f"{g['direct_tokens_per_s']} tokens/s",
            g["ratio"],
            f"{g['engine_ttft_ms'] / 1000:.2f} s / {g['direct_ttft_ms'] / 1000:.2f} s",
        ]
        columns = ["model", "prompt", "engine", "direct", "ratio", "time to first token, engine / direct"]
        print(markdown_table(columns, [row]))


if __name__ == "__main__":
    main()
