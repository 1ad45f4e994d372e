"""The service's own state: liveness and the generation queue, and what the index holds."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from indexer.server.context import Context
from indexer.server.schemas import HealthResponse, IndexResponse

router = APIRouter(tags=["service"])


@router.get("/health", response_model=HealthResponse)
async def health(context: Context) -> dict[str, Any]:
    """Liveness, and the generation queue's state. Never needs the API key."""
    return {"status": "ok", "generation": context.queue.stats()}


@router.get("/v1/index", response_model=IndexResponse)
async def index(context: Context) -> dict[str, Any]:
    """The index's manifest (embedding model, chunking, files) and counts."""
    # Without a key anyone who reaches the server reads this: no absolute paths then.
    return await context.in_thread(context.service.index_info, context.settings.api_key is not None)
