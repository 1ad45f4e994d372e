"""What every route works with, made once by ``create_app``: the service, the policy it shares with
MCP (``indexer.ways_in``: the generation queue, the ``server`` settings, the error mapping), and the
two ways a route runs the service's work from the event loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from indexer.config.models import ServerConfig
from indexer.server.queue import Generation, GenerationQueue
from indexer.server.service import AnswerRequest, RagService
from indexer.server.streaming import until_disconnect
from indexer.ways_in import WaysIn

T = TypeVar("T")

# The OpenAPI entry of the endpoints that wait in the generation queue.
BUSY_RESPONSE: dict[int | str, dict[str, Any]] = {
    503: {"description": "The generation queue is full: retry after the Retry-After header's seconds"}
}


@dataclass
class ServerContext:
    service: RagService
    ways_in: WaysIn
    started: int
    """When the app was made (Unix seconds): the ``created`` of its models."""

    @property
    def settings(self) -> ServerConfig:
        return self.ways_in.settings

    @property
    def queue(self) -> GenerationQueue:
        return self.ways_in.queue

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking service call on a worker thread, so retrieval runs beside generation."""
        return await self.ways_in.in_thread(fn, *args)

    async def start_answer(self, request: AnswerRequest, http: Request) -> Generation:
        """Queue an answer; 503 with Retry-After when the queue is full."""
        # A client that gives up while waiting for the model leaves the line at once.
        return await until_disconnect(http, self.ways_in.generation(self.service.answer_job(request)))


def _server_context(request: Request) -> ServerContext:
    context: ServerContext = request.app.state.context
    return context


Context = Annotated[ServerContext, Depends(_server_context)]
"""A route parameter of this type receives its app's ``ServerContext``."""
