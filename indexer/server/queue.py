"""The generation queue: llama.cpp is not thread-safe, so one answer at a time per model instance.

Generation runs on one dedicated thread; requests (HTTP and MCP alike: ``indexer.ways_in``) wait
their turn in a bounded line and are turned away (503 with Retry-After) when the line is full or
the wait too long, instead of piling up. A
waiter or a running generation can be cancelled at any time (a client that went away): the
generation stops at its next token and the slot passes on at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class QueueFull(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Generation:
    """One job's handle: the worker ``emit``s events, the request reads them with ``events()``."""

    _END = "__end__"
    _ERROR = "__error__"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def emit(self, kind: str, payload: Any = None) -> None:
        """Called from the worker thread."""
        self._loop.call_soon_threadsafe(self._events.put_nowait, (kind, payload))

    def _fail(self, exc: BaseException) -> None:
        self.emit(self._ERROR, exc)

    def _end(self) -> None:
        self.emit(self._END)

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        """The job's events until it ends; a job's exception is re-raised here."""
        while True:
            kind, payload = await self._events.get()
            if kind == self._END:
                return
            if kind == self._ERROR:
                raise payload
            yield kind, payload


class _Waiter:
    """One request waiting for the model, on its own event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.turn: asyncio.Future[None] = loop.create_future()
        self.granted = False  # decided under the queue's lock: the slot is this waiter's


class GenerationQueue:
    """One line for the model, whichever way in (HTTP, MCP) and event loop a request comes from:
    the slot and the line are guarded by a thread lock, and a waiter's turn is handed to its own
    loop, so ways in served on different threads share one queue."""

    def __init__(self, max_waiting: int, wait_timeout_s: float) -> None:
        self.max_waiting = max_waiting
        self.wait_timeout_s = wait_timeout_s
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._busy = False
        self._line: collections.deque[_Waiter] = collections.deque()
        self._running = 0
        self._completed = 0
        self._cancelled = 0
        self._rejected = 0
        self._mean_seconds = 2.0  # a first guess for Retry-After, replaced by measurements

    @property
    def _waiting(self) -> int:
        return len(self._line)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "running": self._running,
                "waiting": self._waiting,
                "max_waiting": self.max_waiting,
                "completed": self._completed,
                "cancelled": self._cancelled,
                "rejected": self._rejected,
            }

    def retry_after(self) -> int:
        """Seconds until the line has likely moved on: the jobs ahead times their mean duration."""
        ahead = self._waiting + self._running
        return max(1, min(120, math.ceil(self._mean_seconds * max(1, ahead))))

    def _pass_on(self) -> None:
        """The slot goes to the first in line that still waits, or is free. Any thread."""
        with self._lock:
            while self._line:
                waiter = self._line.popleft()
                waiter.granted = True
                try:
                    waiter.loop.call_soon_threadsafe(_grant, waiter.turn)
                    return
                except RuntimeError:  # its event loop has closed: the next one's turn
                    continue
            self._busy = False

    async def _wait_turn(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._busy:
                self._busy = True
                return
            if self._waiting >= self.max_waiting:
                self._rejected += 1
                raise QueueFull(
                    f"the model is busy and {self._waiting} request(s) already wait for it "
                    f"(server.queue_size = {self.max_waiting}); retry later",
                    self.retry_after(),
                )
            waiter = _Waiter(loop)
            self._line.append(waiter)
        try:
            async with asyncio.timeout(self.wait_timeout_s):
                await waiter.turn
        except BaseException as exc:  # timed out, or the client went away
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._line.remove(waiter)
                    if isinstance(exc, TimeoutError):
                        self._rejected += 1
            if granted:  # handed the slot as it gave up: it passes on
                self._pass_on()
            if isinstance(exc, TimeoutError):
                raise QueueFull(
                    f"waited {self.wait_timeout_s:g} s for the model (server.queue_timeout_s); retry later",
                    self.retry_after(),
                ) from None
            raise

    async def submit(self, job: Callable[[Generation], None]) -> Generation:
        """Wait for the model (bounded), then start ``job`` on the generation thread.

        Raises ``QueueFull`` when the line is full or the wait times out.
        """
        loop = asyncio.get_running_loop()
        await self._wait_turn()
        generation = Generation(loop)
        with self._lock:
            self._running += 1

        def release(seconds: float) -> None:
            with self._lock:
                self._running -= 1
                self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds
                if generation.cancelled:
                    self._cancelled += 1
                else:
                    self._completed += 1
            self._pass_on()

        def run() -> None:
            started = time.perf_counter()
            try:
                job(generation)
            except BaseException as exc:
                with contextlib.suppress(RuntimeError):
                    generation._fail(exc)
            finally:
                with contextlib.suppress(RuntimeError):  # the event loop closed during shutdown
                    generation._end()
                # The slot passes on only once this thread has stopped touching the model.
                release(time.perf_counter() - started)

        try:
            with self._lock:
                if self._executor is None:  # a queue outlives an app that shut it down: a new thread
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generation")
                executor = self._executor
            executor.submit(run)
        except BaseException:
            with self._lock:
                self._running -= 1
            self._pass_on()
            raise
        return generation

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def _grant(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_result(None)
