"""The FastAPI app: the feature routers (``routes/``) over ``RagService``, with auth, body limits,
the generation queue (shared with MCP: ``indexer.ways_in``) and JSON errors. ``create_app`` takes
an ``Indexer`` (or a config path) and loads everything up front, so a server that starts is a
server that can answer."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from indexer import __version__
from indexer.api import Indexer
from indexer.server.auth import APIKeyMiddleware
from indexer.server.context import ServerContext
from indexer.server.errors import error_body, install_handlers
from indexer.server.hosts import HostAllowListMiddleware, allowed_names
from indexer.server.limits import BodyLimitMiddleware
from indexer.server.page import mount_page
from indexer.server.routes import documents, openai, rag, service
from indexer.server.service import RagService
from indexer.ways_in import ways_in

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": error_body(code, text)}}}
    for code, text in (
        (400, "Invalid request: the message names the field"),
        (401, "Missing or wrong API key"),
        (413, "Request body too large"),
    )
}


def create_app(
    source: Indexer | str | os.PathLike[str], *, warm_up: bool = True, bound_host: str | None = None
) -> FastAPI:
    """The app; ``bound_host`` is the address it listens on (default ``server.host``), which the
    Host allow-list accepts besides the localhost names."""
    indexer = source if isinstance(source, Indexer) else Indexer.from_config(source)
    rag_service = RagService(indexer)
    settings = indexer.config.server
    if warm_up:
        indexer.warm_up()
    # Shared with an MCP server over the same Indexer: one generation queue, one policy.
    policy = ways_in(indexer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        policy.queue.shutdown()

    app = FastAPI(
        title="indexer",
        version=__version__,
        description="A local RAG endpoint over your own documents, with an OpenAI-compatible API.",
        lifespan=lifespan,
        responses=_ERRORS,
        # Swagger UI and ReDoc load their scripts from a CDN: off unless asked for (server.docs).
        docs_url="/docs" if settings.docs else None,
        redoc_url="/redoc" if settings.docs else None,
    )
    app.state.context = ServerContext(rag_service, policy, started=int(time.time()))
    install_handlers(app)
    # Added last = runs first: the key is checked before any body is read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_key:
        app.add_middleware(APIKeyMiddleware, api_key=settings.api_key)
    # Outermost: a request for a foreign Host is refused before the key or the body is looked at.
    hosts = allowed_names(bound_host or settings.host, settings.allowed_hosts)
    app.add_middleware(HostAllowListMiddleware, allowed=hosts)

    mount_page(app)
    for router in (service.router, rag.router, openai.router, documents.router):
        app.include_router(router)
    return app
