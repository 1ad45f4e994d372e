"""One policy for every way in: the HTTP service (``indexer.server``) and MCP (``indexer.mcp_server``)
check the same limits (the ``server`` settings), wait in one generation queue per ``Indexer`` and
map the engine's errors the same way. Each way in only words a ``Refused`` in its own protocol: a
JSON error with the status, or an MCP tool error with the message.

No FastAPI here: MCP runs with the ``mcp`` extra alone.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from indexer.errors import IndexerError, ModelError, StoreError
from indexer.server.queue import GenerationQueue, QueueFull

if TYPE_CHECKING:
    from indexer.api import Indexer
    from indexer.config.models import ServerConfig
    from indexer.server.queue import Generation

T = TypeVar("T")


class Refused(Exception):
    """A request turned down: ``status`` is its HTTP status (400 the request's fault, 404 an unknown
    model, 503 the model or store unavailable or busy); MCP reports ``message`` as a tool error."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})


def refusal_from(exc: IndexerError) -> Refused:
    """The engine's user-facing errors: a store or model that is unavailable is the server's
    problem (503); anything else was caused by the request (400)."""
    if isinstance(exc, StoreError | ModelError):
        return Refused(503, str(exc), code="unavailable")
    return Refused(400, str(exc))


# -- limits ------------------------------------------------------------------------------------


def check_unicode(text: str, param: str) -> None:
    """JSON may carry a lone surrogate (``"\\ud800"``), which is no Unicode character: the
    tokenizers cannot encode it. A 400 naming the field, not a 500 from deep inside the model."""
    from indexer.query.text import unicode_problem

    problem = unicode_problem(text)
    if problem is not None:
        raise Refused(400, f"{param}: {problem}", param=param)


def check_question(question: str, settings: ServerConfig, param: str = "question") -> str:
    """The question, stripped."""
    check_unicode(question, param)
    text = question.strip()
    if not text:
        raise Refused(400, f"{param}: must not be empty or only whitespace", param=param)
    if len(text) > settings.max_question_chars:
        raise Refused(
            400,
            f"{param}: is {len(text)} characters; the limit is {settings.max_question_chars} "
            "(server.max_question_chars)",
            param=param,
        )
    return text


def check_top_k(top_k: int | None, settings: ServerConfig) -> int | None:
    if top_k is not None and top_k > settings.max_top_k:
        raise Refused(
            400,
            f"top_k: must be at most {settings.max_top_k} (server.max_top_k), got {top_k}",
            param="top_k",
        )
    return top_k


# -- running the work --------------------------------------------------------------------------


class WaysIn:
    """What every way in over one ``Indexer`` shares: its ``server`` settings and its generation
    queue (llama.cpp answers one question at a time per model instance). ``ways_in(indexer)``
    gives the one for an ``Indexer``."""

    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer
        self.settings = indexer.config.server
        self.queue = GenerationQueue(
            max_waiting=self.settings.queue_size, wait_timeout_s=self.settings.queue_timeout_s
        )

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking call on a worker thread, so retrieval runs beside generation; an engine
        error becomes a ``Refused``."""
        import anyio

        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except IndexerError as exc:
            raise refusal_from(exc) from None

    async def generation(self, job: Callable[[Generation], None]) -> Generation:
        """``job`` started on the generation thread once the model is free; a 503 ``Refused``
        with Retry-After when the line is full or the wait too long."""
        try:
            return await self.queue.submit(job)
        except QueueFull as exc:
            raise Refused(
                503, str(exc), code="queue_full", headers={"Retry-After": str(exc.retry_after)}
            ) from None

    async def generated(self, work: Callable[[], T]) -> T:
        """``work``'s result, run on the generation thread in its turn: a whole answer at once."""
        generation = await self.generation(lambda g: g.emit("result", work()))
        import anyio

        result: Any = None
        try:
            async for _kind, payload in generation.events():
                result = payload
        except IndexerError as exc:
            raise refusal_from(exc) from None
        except anyio.get_cancelled_exc_class():
            generation.cancel()  # the caller went away: counted so, as an HTTP client that left
            raise
        return result  # type: ignore[no-any-return]


_SHARED: weakref.WeakKeyDictionary[Indexer, WaysIn] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def ways_in(indexer: Indexer) -> WaysIn:
    """The policy every way in over ``indexer`` shares: an HTTP app and an MCP server made from
    the same ``Indexer`` in one process wait in the same generation queue."""
    with _SHARED_LOCK:
        shared = _SHARED.get(indexer)
        if shared is None:
            shared = _SHARED[indexer] = WaysIn(indexer)
        return shared
