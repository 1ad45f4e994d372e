"""Torch work on a CPU as several single-core streams instead of one stream over every core.

A forward pass over every core splits each operation between the cores and waits at its end for
the slowest. A build's machine is never the model's alone (the chunking workers, the Chroma
writer), and each time one of those threads is preempted the others wait idle. Independent
forward passes on one core each need no such wait: each loses only what the other work takes
from its own core. Python threads suffice, since torch lets go of the GIL inside each operation.

Measured on the 2-core development Xeon (AMX), bfloat16, 256 passages of 256 tokens in batches of
16, taking turns: two single-core streams took a median of 3.72 s against 4.60 s for one
two-thread stream with a process busy a tenth of the time beside them, and 4.39 s against 4.83 s
without it (six rounds each; float32, three rounds: 9.73 s against 10.61 s). Whole bfloat16
builds of 1,290 chunks took a median of 19.5 s against 26.7 s (four rounds, each faster).

Not a pool of processes: each would load the model again, seconds a build does not have to spare.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

Item = TypeVar("Item")


def cpu_streams() -> int:
    """How many single-core streams torch's own setting for this thread allows (its intra-op
    threads: ``OMP_NUM_THREADS``, ``torch.set_num_threads``, else a thread per core)."""
    import torch

    return max(1, torch.get_num_threads())


def map_in_streams(work: Callable[[Item], Any], items: Sequence[Item], streams: int) -> list[Any]:
    """``[work(item) for item in items]`` in inference mode, computed by ``streams`` threads whose
    torch operations each run on one core; each thread takes the next item as it finishes one, so
    a stream slowed by other work takes fewer. The first failure is raised here, and an exception
    in the caller's thread (Ctrl-C) is raised at once, every stream ending after its current item."""
    import torch

    streams = min(streams, len(items))
    if streams <= 1:
        with torch.inference_mode():
            return [work(item) for item in items]
    results: list[Any] = [None] * len(items)
    failures: list[BaseException] = []
    stop = threading.Event()
    taken = itertools.count()  # next() on a count is atomic under the GIL
    # torch.set_num_threads sets the calling thread's OpenMP threads and a process-wide default
    # for threads that have not run torch yet: that default is put back once every stream has
    # set its own, so no other thread (a server's, later) starts with one core.
    restore = torch.get_num_threads()
    all_set = threading.Barrier(streams + 1)

    def stream() -> None:
        try:
            # A thread's first call of torch sets its threads from the process-wide default,
            # which is put back below: that first call must come before its own setting.
            torch.get_num_threads()
            torch.set_num_threads(1)
        finally:
            try:
                all_set.wait()
            except threading.BrokenBarrierError:  # the caller was interrupted before they all began
                return
        try:
            with torch.inference_mode():
                while not stop.is_set() and (at := next(taken)) < len(items):
                    results[at] = work(items[at])
        except BaseException as exc:  # raised again in the caller's thread, below
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=stream, name=f"indexer-cpu-stream-{n}") for n in range(streams)]
    try:
        for thread in threads:
            thread.start()
        all_set.wait()
        torch.set_num_threads(restore)
        for thread in threads:
            thread.join()
    except BaseException:
        # Interrupted (Ctrl-C raises KeyboardInterrupt here, in the caller's thread): the streams
        # end after the item each computes, rather than compute every item left (a call over one
        # large document ran on for minutes after Ctrl-C, and the interpreter waits for them to
        # exit). Not waited for: on a busy machine one forward pass takes seconds, which the
        # caller spends stopping the rest of its work.
        stop.set()
        all_set.abort()
        torch.set_num_threads(restore)
        raise
    if failures:
        raise failures[0]
    return results
