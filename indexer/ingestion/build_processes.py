"""How a build starts its helper processes, without the parent's ``__main__``, deaf to Ctrl-C and
ending with the build: the chunking workers forked from a fork server, the encoder process as a new
interpreter."""

from __future__ import annotations

import multiprocessing.context
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from multiprocessing import popen_forkserver, popen_spawn_posix, spawn
from typing import Any


class _WithoutMain:
    """Starts a child without the parent's ``__main__``. Multiprocessing has each new process
    run the parent's script again (as ``__mp_main__``), so a script without an ``if __name__ ==
    "__main__":`` guard, such as the README's Python API example saved as a file, would start a
    build again in every child, which fails there. The children need only indexer's modules."""

    _launching = threading.Lock()

    def _launch(self, process_obj: Any) -> None:
        prepare = spawn.get_preparation_data

        def without_main(name: str) -> dict[str, Any]:
            data = prepare(name)
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
            return data

        # multiprocessing offers no option for this; its preparation data is made by this one
        # function, replaced only while this process is launched.
        with self._launching, _deaf_to_ctrl_c():
            spawn.get_preparation_data = without_main
            try:
                super()._launch(process_obj)  # type: ignore[misc]  # typeshed omits Popen._launch
            finally:
                spawn.get_preparation_data = prepare


@contextmanager
def _deaf_to_ctrl_c() -> Iterator[None]:
    """Processes started in this block (the fork server, once, and so every worker it forks; the
    encoder process) are born with SIGINT blocked, which a new interpreter and a fork keep. Ctrl-C
    goes to the terminal's whole process group: in a child it raised KeyboardInterrupt wherever the
    child was, printing a traceback per process (its start-up included, before any code of ours
    could ignore it). The build alone answers Ctrl-C, and ends its children. Multiprocessing starts
    its own resource tracker the same way."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


class _ForkedPopen(_WithoutMain, popen_forkserver.Popen):
    pass


class _SpawnedPopen(_WithoutMain, popen_spawn_posix.Popen):
    pass


class _ForkedProcess(multiprocessing.context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _ForkedPopen(process_obj)


class _SpawnedProcess(multiprocessing.context.SpawnProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _SpawnedPopen(process_obj)


class _ChildContext(multiprocessing.context.ForkServerContext):
    Process = _ForkedProcess


class _FreshChildContext(multiprocessing.context.SpawnContext):
    Process = _SpawnedProcess


@lru_cache(maxsize=1)
def child_context() -> Any:
    """Children forked from a fork server that imported the chunking code once, so each starts in
    milliseconds: spawned ones spent seconds importing LlamaIndex each, and forking this process
    itself (torch's, Chroma's and the writer's threads running) deadlocked a worker on a lock
    another thread held at the fork, and CUDA cannot be used in a fork of a process that started
    it. The server lives as long as this process, and the children watch the build
    (``exit_with_build``), so neither outlives a killed build."""
    context = _ChildContext()
    context.set_forkserver_preload(["indexer.ingestion.local_engine", "indexer.ingestion.worker_preload"])
    return context


@lru_cache(maxsize=1)
def fresh_child_context() -> Any:
    """Children started as new interpreters, for the encoder process: CUDA fails in a fork of a
    process that initialised it ("CUDA error: initialization error", seen on an H200), and the
    fork server may have, since any module that asks torch whether CUDA is available does. It
    costs the encoder process its imports, once: it outlives its build (``encoders``)."""
    return _FreshChildContext()


def start_child_server() -> None:
    """Start the fork server now: it imports the chunking code and NLTK (seconds), which it then
    does while this process loads the model, rather than after."""
    from multiprocessing import forkserver

    child_context()  # its preload list
    with _deaf_to_ctrl_c():
        forkserver.ensure_running()


def exit_with_build(build_pid: int) -> None:
    """Start a thread that ends this child once the build that started it is gone (SIGKILL
    included). A pool worker waits on a queue whose writing end it holds itself, and every
    fork-server child holds the server's lifeline, so without this a killed build would leave its
    children and the fork server running for good."""
    threading.Thread(target=_watch, args=(build_pid,), name="indexer-orphan-check", daemon=True).start()


def _watch(build_pid: int) -> None:
    while True:
        time.sleep(0.5)
        try:
            os.kill(build_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # the pid now belongs to another user's process: ours is gone
            os._exit(0)
