"""Our own endpoints: the passages for a question, and an answer with its sources."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from indexer.server import sse
from indexer.server.context import BUSY_RESPONSE, Context
from indexer.server.schemas import QueryRequest, QueryResponse, RetrieveRequest, RetrieveResponse
from indexer.server.service import AnswerRequest
from indexer.server.streaming import collect, query_events, until_disconnect
from indexer.server.validation import check_question, check_top_k

router = APIRouter(tags=["rag"])


@router.post("/v1/retrieve", response_model=RetrieveResponse)
async def retrieve(body: RetrieveRequest, context: Context) -> dict[str, Any]:
    """The passages that best match the question, best first. Runs concurrently with answers."""
    settings = context.settings
    question = check_question(body.question, settings)
    sources, notice = await context.in_thread(
        context.service.retrieve, question, check_top_k(body.top_k, settings), body.filters, body.mode
    )
    return {"sources": sources, "notice": notice}


@router.post("/v1/query", response_model=QueryResponse, responses=BUSY_RESPONSE)
async def query(body: QueryRequest, request: Request, context: Context) -> Any:
    """An answer with its sources; with ``stream: true``, Server-Sent Events: ``token``
    events (``{"text"}``), then ``sources``, then ``done`` (``{"answer", "notice",
    "finish_reason", "abstained", "sentences"}``); ``error`` if generation fails midway.
    ``abstained``: no passage was relevant enough, so the LLM was not asked (the sources are the
    nearest ones)."""
    job = AnswerRequest(
        question=check_question(body.question, context.settings),
        top_k=check_top_k(body.top_k, context.settings),
        filters=body.filters,
        max_tokens=body.max_tokens,
        mode=body.mode,
        history=[turn.model_dump() for turn in body.history],
    )
    generation = await context.start_answer(job, request)
    if body.stream:
        return sse.EventStream(query_events(generation), on_close=generation.cancel)
    sources, end, _ = await until_disconnect(request, collect(generation), generation.cancel)
    return {
        "answer": end.answer,
        "sources": sources,
        "notice": end.notice,
        "finish_reason": end.finish_reason,
        "abstained": end.abstained,
        "sentences": end.sentences,
    }
