"""A core of its own for each pytest-xdist worker, while the others run.

Two workers on two cores each start llama.cpp, onnxruntime and torch with as many threads as the
process may use cores (``indexer.cpu.cpu_count``, affinity-aware). Run side by side, four threads
share two cores, and the threads of llama.cpp and onnxruntime spin at their barriers waiting for a
peer the other worker's threads pushed off its core: the same tests take longer, not just equally
long. Pinned, a worker and every process it starts (they inherit the affinity) run single-threaded
on a core nobody else wants, as ``taskset`` would run them.

When the other workers have finished, the last one is given back every core: a long test file at
the end of the run is not held to one core while the others stand idle.
"""

from __future__ import annotations

import os
from pathlib import Path

_all_cores: set[int] | None = None  # this worker's cores before pinning; None when not pinned


def pin_worker(worker: str, workers: int) -> None:
    """Pins worker ``gwN`` to the N-th core it may use, when there are as many workers as cores."""
    global _all_cores
    if not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if workers < 2 or workers != len(cores):
        return
    _all_cores = set(cores)
    os.sched_setaffinity(0, {cores[int(worker.removeprefix("gw")) % len(cores)]})


def unpin_when_alone(worker: str, workers: int, folder: Path) -> None:
    """Before each test: every core back once the other workers have marked themselves finished
    in ``folder``."""
    global _all_cores
    if _all_cores is None:
        return
    done = {path.name for path in folder.glob("gw*")} if folder.is_dir() else set()
    if len(done - {worker}) >= workers - 1:
        os.sched_setaffinity(0, _all_cores)
        _all_cores = None


def mark_finished(worker: str, folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    (folder / worker).touch()
