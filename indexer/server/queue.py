"""The generation queue: llama.cpp is not thread-safe, so one answer at a time per model instance.

Generation runs on one dedicated thread; requests wait their turn in a bounded line and are turned
away (503 with Retry-After) when the line is full or the wait too long, instead of piling up. A
waiter or a running generation can be cancelled at any time (a client that went away): the
generation stops at its next token and the slot passes on at once.
"""

from __future__ import annotations

import asyncio
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


class GenerationQueue:
    def __init__(self, max_waiting: int, wait_timeout_s: float) -> None:
        self.max_waiting = max_waiting
        self.wait_timeout_s = wait_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generation")
        self._slot: asyncio.Semaphore | None = None
        self._waiting = 0
        self._running = 0
        self._completed = 0
        self._cancelled = 0
        self._rejected = 0
        self._mean_seconds = 2.0  # a first guess for Retry-After, replaced by measurements

    def stats(self) -> dict[str, int]:
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

    async def submit(self, job: Callable[[Generation], None]) -> Generation:
        """Wait for the model (bounded), then start ``job`` on the generation thread.

        Raises ``QueueFull`` when the line is full or the wait times out.
        """
        loop = asyncio.get_running_loop()
        if self._slot is None:
            self._slot = asyncio.Semaphore(1)
        slot = self._slot
        if slot.locked() and self._waiting >= self.max_waiting:
            self._rejected += 1
            raise QueueFull(
                f"the model is busy and {self._waiting} request(s) already wait for it "
                f"(server.queue_size = {self.max_waiting}); retry later",
                self.retry_after(),
            )
        self._waiting += 1
        try:
            async with asyncio.timeout(self.wait_timeout_s):
                await slot.acquire()
        except TimeoutError:
            self._rejected += 1
            raise QueueFull(
                f"waited {self.wait_timeout_s:g} s for the model (server.queue_timeout_s); retry later",
                self.retry_after(),
            ) from None
        finally:
            self._waiting -= 1

        generation = Generation(loop)
        self._running += 1

        def release(seconds: float) -> None:
            self._running -= 1
            self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds
            if generation.cancelled:
                self._cancelled += 1
            else:
                self._completed += 1
            slot.release()

        def run() -> None:
            started = time.perf_counter()
            try:
                job(generation)
            except BaseException as exc:
                generation._fail(exc)
            finally:
                generation._end()
                # The slot passes on only once this thread has stopped touching the model.
                with contextlib.suppress(RuntimeError):  # the event loop closed during shutdown
                    loop.call_soon_threadsafe(release, time.perf_counter() - started)

        try:
            self._executor.submit(run)
        except BaseException:
            self._running -= 1
            slot.release()
            raise
        return generation

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
