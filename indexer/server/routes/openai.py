"""The OpenAI-compatible endpoints: chat completions over the index, its models, and embeddings
from the index's own embedding model."""

from __future__ import annotations

import base64
import struct
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request

from indexer.server import sse
from indexer.server.context import BUSY_RESPONSE, Context
from indexer.server.schemas import ChatCompletionRequest, EmbeddingsRequest, ModelCard, ModelList
from indexer.server.service import AnswerRequest
from indexer.server.streaming import chat_events, collect, until_disconnect, usage
from indexer.server.validation import (
    check_model,
    check_question,
    check_top_k,
    embedding_texts,
    split_messages,
)

router = APIRouter(tags=["openai"])


@router.post("/v1/chat/completions", responses=BUSY_RESPONSE)
async def chat_completions(body: ChatCompletionRequest, request: Request, context: Context) -> Any:
    """OpenAI-compatible chat: the last (user) message is the question, earlier messages are
    history. Sources come in the extra field ``sources``, each answer sentence's citations and
    support in ``sentences`` (on the final chunk when streaming), and ``abstained`` says whether
    the answer is "not in your documents" (the LLM was not asked)."""
    service = context.service
    check_model(body.model, service.model_id)
    question, history = split_messages(body)
    job = AnswerRequest(
        question=check_question(question, context.settings, "messages"),
        top_k=check_top_k(body.top_k, context.settings),
        filters=body.filters,
        history=history,
        max_tokens=body.max_completion_tokens or body.max_tokens,
    )
    generation = await context.start_answer(job, request)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = chat_events(generation, completion_id, created, service.model_id, include_usage)
        return sse.EventStream(events, on_close=generation.cancel)
    sources, end, text = await until_disconnect(request, collect(generation), generation.cancel)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": service.model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": end.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage(end),
        "sources": sources,
        "notice": end.notice,
        "abstained": end.abstained,
        "sentences": end.sentences,
    }


@router.get("/v1/models", response_model=ModelList)
async def models(context: Context) -> dict[str, Any]:
    """The chat model (this index behind the LLM) and the index's embedding model."""
    service, started = context.service, context.started
    return {
        "object": "list",
        "data": [
            ModelCard(id=service.model_id, created=started, owned_by="indexer"),
            ModelCard(id=service.embedding_model_id, created=started, owned_by="indexer"),
        ],
    }


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingsRequest, context: Context) -> dict[str, Any]:
    """Vectors from the index's own embedding model (as passages are embedded)."""
    service = context.service
    texts = embedding_texts(body, context.settings, service.embedding_model_id, service.embedding_dimension)
    vectors, tokens = await context.in_thread(service.embed, texts)
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": service.embedding_model_id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":  # what the openai client asks for by default: little-endian float32
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector
