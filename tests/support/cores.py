"""Cores for pytest-xdist workers: each worker pinned to one core, the running workers spread
evenly over the cores, and every core given back to the last one.

Two workers on two cores each start llama.cpp, onnxruntime and torch with as many threads as the
process may use cores (``indexer.cpu.cpu_count``, affinity-aware). Run side by side, four threads
share two cores, and the threads of llama.cpp and onnxruntime spin at their barriers waiting for a
peer the other worker's threads pushed off its core: the same tests take longer, not just equally
long. Pinned, a worker and every process it starts (they inherit the affinity) run single-threaded,
as ``taskset`` would run them.

With more workers than cores (a multiple of them), the workers that share a core each run one
thread, so none of them spins waiting for another, and a core whose worker waits (for a
subprocess, a server, a sleep) runs the other one meanwhile.

Before each test a worker takes its place among the workers still running (``folder`` holds a
file for each finished one): the i-th of them the i-th core, so that no core stands idle while two
workers share another, and every core once it is the last one.
"""

from __future__ import annotations

import os
from pathlib import Path

_cores: list[int] | None = None  # the cores the run may use; None when workers are not pinned


def pin_worker(worker: str, workers: int) -> None:
    """Pins worker ``gwN`` to core N (modulo their number), when the workers are a multiple of
    the cores."""
    global _cores
    if not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if workers < 2 or len(cores) < 2 or workers % len(cores):
        return
    _cores = cores
    os.sched_setaffinity(0, {cores[_number(worker) % len(cores)]})


def rebalance(worker: str, workers: int, folder: Path) -> None:
    """Before each test: this worker's core among the workers that have not marked themselves
    finished in ``folder``; every core when it is the last."""
    if _cores is None:
        return
    done = {path.name for path in folder.glob("gw*")} if folder.is_dir() else set()
    running = sorted((f"gw{n}" for n in range(workers) if f"gw{n}" not in done), key=_number)
    wanted = set(_cores) if len(running) == 1 else {_cores[running.index(worker) % len(_cores)]}
    if os.sched_getaffinity(0) != wanted:
        os.sched_setaffinity(0, wanted)


def mark_finished(worker: str, folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    (folder / worker).touch()


def _number(worker: str) -> int:
    return int(worker.removeprefix("gw"))
