"""What Ray costs per chunk: the same files read, chunked and embedded by a local build's engine
and on a Ray cluster with one and with two embedding actors, in one run, on the same cores.

    python -m benchmarks.ray_build                        # a local Ray cluster in this process
    python -m benchmarks.ray_build --address HOST:PORT    # a running cluster (it must see --corpus)
    python -m benchmarks.ray_build --json

Reports, per side:
- chunks/s once the model is loaded (best of ``--repeats`` rounds; each round runs every side once,
  so the machine's changing load falls on all of them alike);
- for Ray: the fixed cost of a build (connecting, starting the actors, loading the model in each),
  the overhead per chunk against the local engine on the same cores, 1/rate_ray - 1/rate_local, and
  each actor's own busy time (reading, chunking, embedding): the wall time beyond it, per chunk,
  is what Ray's dispatch and transfers cost (the gap), apart from how fast the actors compute;
- the driver's own ceiling: chunks/s it writes into a `chroma run` server on this machine (every
  Ray build's chunks pass through that one writer), which no number of nodes goes past.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import add_markdown_flag, markdown_table
from tests.support.corpus import work_items, write_corpus


def make_config(corpus: Path, address: str | None, actors: int, cpus: float, batch_size: int) -> Any:
    from indexer.config.models import Config

    return Config.model_validate(
        {
            "data": {"input_dir": str(corpus)},
            "vector_store": {"host": "127.0.0.1", "collection": "bench"},
            "llm": {"provider": "none"},
            "build": {
                "engine": "ray",
                "ray": {"address": address, "actors": actors, "num_cpus": cpus, "batch_size": batch_size},
            },
        }
    )


def local_engine(config: Any) -> Any:
    """The engine of a local build (``build.engine: local``), on the same cores."""
    from indexer.components import Components
    from indexer.ingestion.local_engine import LocalEngine
    from indexer.ingestion.pipeline import flush_chunks

    return LocalEngine(Components(config), flush_chunks=flush_chunks(config))


def timed(prepare: Any, items: list[Any]) -> tuple[float, list[Any]]:
    started = time.perf_counter()
    prepared = list(prepare(items))
    return time.perf_counter() - started, prepared


def ray_round(config: Any, items: list[Any], warm: list[Any]) -> dict[str, float]:
    from indexer.ingestion.ray_engine import RayEngine

    started = time.perf_counter()
    engine = RayEngine(config)
    try:
        connect_s = time.perf_counter() - started
        list(engine.prepare(warm))  # starts every actor and loads its model
        start_s = time.perf_counter() - started
        busy_before = sum(w.busy_s for w in engine.workers())
        seconds, _ = timed(engine.prepare, items)
        busy = sum(w.busy_s for w in engine.workers()) - busy_before
    finally:
        engine.close()
    return {"connect_s": connect_s, "start_s": start_s, "seconds": seconds, "busy_s": busy}


def driver_write_rate(prepared: list[Any], batch: int = 512) -> float:
    """Chunks/s the driver writes, vectors given, into a Chroma server on this machine, ``batch``
    chunks per request (one request per file would measure HTTP round trips instead)."""
    import numpy as np

    from indexer.config.models import VectorStoreConfig
    from indexer.index.chroma import get_collection, open_client
    from indexer.index.store import ChunkStore
    from tests.support.chroma_server import running_chroma

    chunks = [c for p in prepared for c in p.chunks]
    vectors = np.concatenate([p.vectors for p in prepared])
    data = tempfile.TemporaryDirectory(prefix="indexer-bench-chroma-")
    with data, running_chroma(Path(data.name)) as port:
        settings = VectorStoreConfig(host="127.0.0.1", port=port, collection="bench")
        client = open_client(settings)
        store = ChunkStore(get_collection(client, settings, create=True), client.get_max_batch_size())
        started = time.perf_counter()
        for at in range(0, len(chunks), batch):
            store.add(chunks[at : at + batch], vectors[at : at + batch])
        return len(chunks) / (time.perf_counter() - started)


def measure(args: argparse.Namespace, corpus: Path) -> dict[str, Any]:
    cores = args.cpus
    items = work_items(corpus)
    # Enough batches that both actors of the two-actor side load their model while warming up.
    warm = items[: 2 * args.batch_size]
    shapes = [(1, float(cores)), (2, cores / 2)]
    local = local_engine(make_config(corpus, args.address, 1, cores, args.batch_size))
    list(local.prepare(warm))  # the model, the tokenizer and NLTK's data, outside the timings
    best: dict[str, float] = {"local": math.inf}
    starts: dict[str, dict[str, float]] = {}
    busy: dict[str, float] = {}  # an actor's own busy seconds in the best run, per actor
    chunks = 0
    prepared: list[Any] = []
    for _ in range(args.repeats):
        seconds, prepared = timed(local.prepare, items)
        best["local"] = min(best["local"], seconds)
        chunks = sum(len(p.chunks) for p in prepared)
        for actors, cpus in shapes:
            name = f"ray {actors} actor{'s' * (actors > 1)} x {cpus:g} CPU"
            run = ray_round(make_config(corpus, args.address, actors, cpus, args.batch_size), items, warm)
            if run["seconds"] < best.get(name, math.inf):
                best[name], busy[name] = run["seconds"], run["busy_s"] / actors
            starts[name] = {k: min(v, starts.get(name, {}).get(k, math.inf)) for k, v in run.items()}
    sides = []
    for name, seconds in best.items():
        side: dict[str, Any] = {"side": name, "seconds": round(seconds, 2), "chunks_per_s": chunks / seconds}
        if name != "local":
            side["overhead_ms_per_chunk"] = 1000 * (seconds - best["local"]) / chunks
            side["vs_local"] = best["local"] / seconds
            side["connect_s"] = round(starts[name]["connect_s"], 1)
            side["start_s"] = round(starts[name]["start_s"], 1)
            # Inside the actors vs the wall clock: the rest is waiting on dispatch and transfer, the
            # overhead of Ray itself, whatever the load on the machine does to the compute.
            side["actor_busy_s"] = round(busy[name], 2)
            side["ray_gap_ms_per_chunk"] = 1000 * (seconds - busy[name]) / chunks
        sides.append(side)
    from indexer.components.embedding import resolve_dtype

    return {
        "dtype": resolve_dtype(local.components.config.embedding)[0],
        "documents": len(items),
        "chunks": chunks,
        "cpus": cores,
        "address": args.address or "local cluster in this process",
        "sides": sides,
        "driver_write_chunks_per_s": driver_write_rate(prepared),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, help="a folder of documents (default: generated)")
    parser.add_argument("--files", type=int, default=100, help="generated documents")
    parser.add_argument("--sentences", type=int, default=30, help="sentences per generated document")
    parser.add_argument(
        "--batch-size", type=int, default=8, help="documents per Ray task (build.ray.batch_size)"
    )
    parser.add_argument("--address", help="build.ray.address (default: a local cluster in this process)")
    parser.add_argument(
        "--cpus", type=int, default=len(os.sched_getaffinity(0)), help="cores each side uses (default: all)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="rounds; the best run of each side counts")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_markdown_flag(parser)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from benchmarks.machine import cpu_description

    with tempfile.TemporaryDirectory(prefix="indexer-bench-ray-") as tmp:
        corpus = args.corpus
        if corpus is None:
            corpus = Path(tmp) / "corpus"
            write_corpus(corpus, args.files, sentences=args.sentences, seed=1)
        report = {"cpu": cpu_description(), **measure(args, corpus)}
    if args.json:
        print(json.dumps(report))
        return
    if args.markdown:
        table = [
            [
                side["side"],
                f"{side['chunks_per_s']:.1f} ({side.get('vs_local', 1):.2f})",
                f"{side['ray_gap_ms_per_chunk']:.2f} ms" if "ray_gap_ms_per_chunk" in side else None,
                f"{side['start_s']} s (connect {side['connect_s']} s)" if "start_s" in side else None,
            ]
            for side in report["sides"]
        ]
        table.append(
            [
                "the driver writing to a `chroma run` server",
                f"{report['driver_write_chunks_per_s']:.0f}",
                None,
                None,
            ]
        )
        columns = [
            f"side ({report['chunks']} chunks, {report['dtype']})",
            "chunks/s (vs local)",
            "Ray's gap per chunk",
            "start of a build",
        ]
        print(markdown_table(columns, table))
        return
    cpu = report["cpu"]
    print(
        f"CPU: {cpu['model']}, {cpu['cores']} cores, flags {' '.join(cpu['flags'])}, load {cpu['load_1min']}"
    )
    print(
        f"corpus: {report['documents']} documents, {report['chunks']} chunks, embedded in"
        f" {report['dtype']}; {report['address']}"
    )
    for side in report["sides"]:
        line = f"{side['side']:<24} {side['chunks_per_s']:7.1f} chunks/s  ({side['seconds']} s)"
        if "overhead_ms_per_chunk" in side:
            line += (
                f"  = {side['vs_local']:.2f} of local, {side['overhead_ms_per_chunk']:+.1f} ms/chunk;"
                f" actors busy {side['actor_busy_s']} s each, gap {side['ray_gap_ms_per_chunk']:.2f}"
                f" ms/chunk; start {side['start_s']} s (connect {side['connect_s']} s)"
            )
        print(line)
    print(f"driver writes to a Chroma server: {report['driver_write_chunks_per_s']:.0f} chunks/s")


if __name__ == "__main__":
    main()
