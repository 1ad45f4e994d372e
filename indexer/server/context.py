"""What every route works with, made once by ``create_app``: the service, the generation queue and
the ``server`` settings, and the two ways a route runs the service's work from the event loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Request

from indexer.config.models import ServerConfig
from indexer.errors import IndexerError
from indexer.server.errors import APIError, api_error_from
from indexer.server.queue import Generation, GenerationQueue, QueueFull
from indexer.server.service import AnswerRequest, RagService
from indexer.server.streaming import until_disconnect

T = TypeVar("T")

# The OpenAPI entry of the endpoints that wait in the generation queue.
BUSY_RESPONSE: dict[int | str, dict[str, Any]] = {
    503: {"description": "The generation queue is full: retry after the Retry-After header's seconds"}
}


@dataclass
class ServerContext:
    service: RagService
    queue: GenerationQueue
    settings: ServerConfig
    started: int
    """When the app was made (Unix seconds): the ``created`` of its models."""

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking service call on a worker thread, so retrieval runs beside generation."""
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except IndexerError as exc:
            raise api_error_from(exc) from None

    async def start_answer(self, request: AnswerRequest, http: Request) -> Generation:
        """Queue an answer; 503 with Retry-After when the queue is full."""
        try:
            # A client that gives up while waiting for the model leaves the line at once.
            return await until_disconnect(http, self.queue.submit(self.service.answer_job(request)))
        except QueueFull as exc:
            raise APIError(
                503, str(exc), code="queue_full", headers={"Retry-After": str(exc.retry_after)}
            ) from None


def _server_context(request: Request) -> ServerContext:
    context: ServerContext = request.app.state.context
    return context


Context = Annotated[ServerContext, Depends(_server_context)]
"""A route parameter of this type receives its app's ``ServerContext``."""
