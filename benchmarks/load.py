"""Load test of the HTTP service: concurrent clients on 127.0.0.1 for a fixed time.

Starts `indexer serve` in a subprocess (by default on the sample corpus with the tiny test GGUF,
built in a temporary folder), then runs a bounded loop of client threads, a share of them asking
for full answers and the rest for retrieval, and reports requests/s, p50/p95 latency per kind, the
status breakdown and the server's resident memory before and after. Exits 1 on any 5xx other than
the intended 503 (queue full), or when memory grew by more than --max-growth-mb.

    python -m benchmarks.load --seconds 30 --clients 8 [--config CONFIG]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks.machine import add_markdown_flag, markdown_table

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    json.loads(line)["question"]
    for line in (ROOT / "data" / "sample_questions.jsonl").read_text().splitlines()
    if line.strip()
]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sample_config(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from indexer import Indexer
    from tests.conftest import SAMPLE_DIR, write_config
    from tests.support.tiny_gguf import write_tiny_llama_gguf

    model = write_tiny_llama_gguf(folder / "tiny.gguf", n_ctx_train=8192)
    config = write_config(folder, SAMPLE_DIR, model_path=model)
    Indexer.from_config(config).build()
    return config


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def phase(url: str, args: argparse.Namespace, seconds: float) -> tuple[dict[str, list[float]], Counter[str]]:
    """``args.clients`` threads looping for ``seconds``: latencies of successes, and all statuses."""
    latencies: dict[str, list[float]] = {"retrieve": [], "answer": []}
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(index: int) -> None:
        kind = "answer" if index < args.answer_clients else "retrieve"
        path = "/v1/query" if kind == "answer" else "/v1/retrieve"
        with httpx.Client(base_url=url, timeout=120) as http:
            i = index
            while time.monotonic() < stop_at:
                question = QUESTIONS[i % len(QUESTIONS)]
                i += 1
                started = time.perf_counter()
                try:
                    status = str(http.post(path, json={"question": question}).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    statuses[f"{kind} {status}"] += 1
                    if status == "200":
                        latencies[kind].append(elapsed)
                if status == "503":
                    time.sleep(0.2)  # a polite client backs off

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="indexer-load-"))
    config = Path(args.config) if args.config else sample_config(folder)
    from tests.support.live_server import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "indexer",
            "serve",
            str(config),
            "--port",
            str(port),
            "--set",
            f"server.queue_size={args.queue_size}",
            "--set",
            f"llm.max_new_tokens={args.max_tokens}",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"the server did not start:\n{server.stderr.read() if server.stderr else ''}"
                )
            time.sleep(0.2)
        httpx.post(f"{url}/v1/query", json={"question": QUESTIONS[0]}, timeout=120)
        # A first round of the same load fills the thread pools and allocator caches, so "before"
        # is the steady state and any growth measured after is a leak, not a warm-up.
        phase(url, args, args.warmup_seconds)
        rss_before = rss_mb(server.pid)
        started = time.monotonic()
        latencies, statuses = phase(url, args, args.seconds)
        wall = time.monotonic() - started
        rss_after = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    ok = {k: len(v) for k, v in latencies.items()}
    report = {
        "seconds": round(wall, 1),
        "clients": args.clients,
        "answer_clients": args.answer_clients,
        "requests_per_s": {k: round(n / wall, 2) for k, n in ok.items()},
        "p50_ms": {k: round(1000 * statistics.median(v), 1) if v else None for k, v in latencies.items()},
        "p95_ms": {k: round(1000 * percentile(v, 0.95), 1) if v else None for k, v in latencies.items()},
        "statuses": dict(sorted(statuses.items())),
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_after": round(rss_after, 1),
    }
    bad = {s: n for s, n in statuses.items() if not s.endswith((" 200", " 503"))}
    report["unexpected"] = bad
    report["ok"] = not bad and rss_after - rss_before <= args.max_growth_mb
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="Serve this config (default: the sample corpus + tiny GGUF).")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup-seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--answer-clients", type=int, default=3, help="Clients asking for full answers.")
    parser.add_argument("--queue-size", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=32, help="llm.max_new_tokens for the run.")
    parser.add_argument("--max-growth-mb", type=float, default=20.0)
    add_markdown_flag(parser)
    args = parser.parse_args()
    report = run(args)
    print(json.dumps(report, indent=2))
    if args.markdown:
        table = [
            [kind, report["requests_per_s"][kind], report["p50_ms"][kind], report["p95_ms"][kind]]
            for kind in report["requests_per_s"]
        ]
        print(markdown_table(["requests", "requests/s", "p50 ms", "p95 ms"], table))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
