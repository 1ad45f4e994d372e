"""The FastAPI app: endpoints over ``RagService``, with auth, body limits, the generation queue and
JSON errors. ``create_app`` takes an ``Indexer`` (or a config path) and loads everything up front, so
a server that starts is a server that can answer."""

from __future__ import annotations

import base64
import os
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
from fastapi import FastAPI, Request

from indexer import __version__
from indexer.api import Indexer
from indexer.errors import IndexerError
from indexer.server import sse
from indexer.server.auth import APIKeyMiddleware
from indexer.server.errors import APIError, api_error_from, error_body, install_handlers, log
from indexer.server.hosts import HostAllowListMiddleware, allowed_names
from indexer.server.limits import BodyLimitMiddleware
from indexer.server.page import mount_page
from indexer.server.queue import Generation, GenerationQueue, QueueFull
from indexer.server.schemas import (
    ChatCompletionRequest,
    EmbeddingsRequest,
    HealthResponse,
    IndexResponse,
    ModelCard,
    ModelList,
    QueryRequest,
    QueryResponse,
    RetrieveRequest,
    RetrieveResponse,
)
from indexer.server.service import AnswerEnd, AnswerRequest, RagService

T = TypeVar("T")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": error_body(code, text)}}}
    for code, text in (
        (400, "Invalid request: the message names the field"),
        (401, "Missing or wrong API key"),
        (413, "Request body too large"),
    )
}
_BUSY: dict[int | str, dict[str, Any]] = {
    503: {"description": "The generation queue is full: retry after the Retry-After header's seconds"}
}


def create_app(
    source: Indexer | str | os.PathLike[str], *, warm_up: bool = True, bound_host: str | None = None
) -> FastAPI:
    """The app; ``bound_host`` is the address it listens on (default ``server.host``), which the
    Host allow-list accepts besides the localhost names."""
    indexer = source if isinstance(source, Indexer) else Indexer.from_config(source)
    service = RagService(indexer)
    settings = indexer.config.server
    if warm_up:
        service.warm_up()
    queue = GenerationQueue(max_waiting=settings.queue_size, wait_timeout_s=settings.queue_timeout_s)
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        queue.shutdown()

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
    app.state.service = service
    app.state.queue = queue
    install_handlers(app)
    # Added last = runs first: the key is checked before any body is read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_key:
        app.add_middleware(APIKeyMiddleware, api_key=settings.api_key)
    # Outermost: a request for a foreign Host is refused before the key or the body is looked at.
    hosts = allowed_names(bound_host or settings.host, settings.allowed_hosts)
    app.add_middleware(HostAllowListMiddleware, allowed=hosts)

    def check_question(question: str, param: str = "question") -> str:
        check_unicode(question, param)
        text = question.strip()
        if not text:
            raise APIError(400, f"{param}: must not be empty or only whitespace", param=param)
        if len(text) > settings.max_question_chars:
            raise APIError(
                400,
                f"{param}: is {len(text)} characters; the limit is {settings.max_question_chars} "
                "(server.max_question_chars)",
                param=param,
            )
        return text

    def check_top_k(top_k: int | None) -> int | None:
        if top_k is not None and top_k > settings.max_top_k:
            raise APIError(
                400,
                f"top_k: must be at most {settings.max_top_k} (server.max_top_k), got {top_k}",
                param="top_k",
            )
        return top_k

    def check_model(model: str, expected: str) -> None:
        if model != expected:
            raise APIError(
                404,
                f"model: unknown model {model!r}; this endpoint serves {expected!r} (see GET /v1/models)",
                param="model",
                code="model_not_found",
            )

    async def in_thread(fn: Any, *args: Any) -> Any:
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except IndexerError as exc:
            raise api_error_from(exc) from None

    async def start(request: AnswerRequest, http: Request) -> Generation:
        try:
            # A client that gives up while waiting for the model leaves the line at once.
            return await _until_disconnect(http, queue.submit(service.answer_job(request)))
        except QueueFull as exc:
            raise APIError(
                503, str(exc), code="queue_full", headers={"Retry-After": str(exc.retry_after)}
            ) from None

    mount_page(app)

    # -- endpoints ----------------------------------------------------------------------------

    @app.get("/health", response_model=HealthResponse, tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness, and the generation queue's state. Never needs the API key."""
        return {"status": "ok", "generation": queue.stats()}

    @app.get("/v1/index", response_model=IndexResponse, tags=["service"])
    async def index() -> dict[str, Any]:
        """The index's manifest (embedding model, chunking, files) and counts."""
        # Without a key anyone who reaches the server reads this: no absolute paths then.
        return await in_thread(service.index_info, settings.api_key is not None)

    @app.post("/v1/retrieve", response_model=RetrieveResponse, tags=["rag"])
    async def retrieve(body: RetrieveRequest) -> dict[str, Any]:
        """The passages that best match the question, best first. Runs concurrently with answers."""
        question = check_question(body.question)
        sources = await in_thread(
            service.retrieve, question, check_top_k(body.top_k), body.filters, body.mode
        )
        return {"sources": sources}

    @app.post("/v1/query", response_model=QueryResponse, responses=_BUSY, tags=["rag"])
    async def query(body: QueryRequest, request: Request) -> Any:
        """An answer with its sources; with ``stream: true``, Server-Sent Events: ``token``
        events (``{"text"}``), then ``sources``, then ``done`` (``{"answer", "notice",
        "finish_reason"}``); ``error`` if generation fails midway."""
        job = AnswerRequest(
            question=check_question(body.question),
            top_k=check_top_k(body.top_k),
            filters=body.filters,
            max_tokens=body.max_tokens,
            mode=body.mode,
            history=[turn.model_dump() for turn in body.history],
        )
        generation = await start(job, request)
        if body.stream:
            return sse.EventStream(_query_events(generation), on_close=generation.cancel)
        sources, end, _ = await _until_disconnect(request, _collect(generation), generation.cancel)
        return {
            "answer": end.answer,
            "sources": sources,
            "notice": end.notice,
            "finish_reason": end.finish_reason,
        }

    @app.post("/v1/chat/completions", responses=_BUSY, tags=["openai"])
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        """OpenAI-compatible chat: the last (user) message is the question, earlier messages are
        history. Sources come in the extra field ``sources`` (on the final chunk when streaming)."""
        check_model(body.model, service.model_id)
        question, history = _split_messages(body)
        job = AnswerRequest(
            question=check_question(question, "messages"),
            top_k=check_top_k(body.top_k),
            filters=body.filters,
            history=history,
            max_tokens=body.max_completion_tokens or body.max_tokens,
        )
        generation = await start(job, request)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            events = _chat_events(generation, completion_id, created, service.model_id, usage)
            return sse.EventStream(events, on_close=generation.cancel)
        sources, end, text = await _until_disconnect(request, _collect(generation), generation.cancel)
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
            "usage": _usage(end),
            "sources": sources,
            "notice": end.notice,
        }

    @app.get("/v1/models", response_model=ModelList, tags=["openai"])
    async def models() -> dict[str, Any]:
        """The chat model (this index behind the LLM) and the index's embedding model."""
        return {
            "object": "list",
            "data": [
                ModelCard(id=service.model_id, created=started, owned_by="indexer"),
                ModelCard(id=service.embedding_model_id, created=started, owned_by="indexer"),
            ],
        }

    @app.post("/v1/embeddings", tags=["openai"])
    async def embeddings(body: EmbeddingsRequest) -> dict[str, Any]:
        """Vectors from the index's own embedding model (as passages are embedded)."""
        check_model(body.model, service.embedding_model_id)
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts:
            raise APIError(400, "input: must not be empty", param="input")
        if len(texts) > settings.max_embedding_inputs:
            raise APIError(
                400,
                f"input: {len(texts)} texts; the limit is {settings.max_embedding_inputs} "
                "(server.max_embedding_inputs)",
                param="input",
            )
        if not all(isinstance(t, str) for t in texts):
            raise APIError(400, "input: token arrays are not supported; send text", param="input")
        if any(not t.strip() for t in texts):  # type: ignore[union-attr]
            raise APIError(400, "input: texts must not be empty", param="input")
        for i, text in enumerate(texts):
            check_unicode(text, f"input.{i}" if isinstance(body.input, list) else "input")  # type: ignore[arg-type]
        if body.dimensions is not None and body.dimensions != service.embedding_dimension:
            raise APIError(
                400,
                f"dimensions: {service.embedding_model_id} gives {service.embedding_dimension} dimensions",
                param="dimensions",
            )
        vectors, tokens = await in_thread(service.embed, texts)
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

    return app


def check_unicode(text: str, param: str) -> None:
    """JSON may carry a lone surrogate (``"\\ud800"``), which is no Unicode character: the
    tokenizers cannot encode it. A 400 naming the field, not a 500 from deep inside the model."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise APIError(
            400,
            f"{param}: contains a lone surrogate ({text[exc.start]!r} at character {exc.start}), "
            "which is not valid Unicode text",
            param=param,
        ) from None


# -- answers: collecting, streaming, cancelling -------------------------------------------------


async def _collect(generation: Generation) -> tuple[list[dict[str, Any]], AnswerEnd, str | None]:
    sources: list[dict[str, Any]] = []
    end: AnswerEnd | None = None
    try:
        async for kind, payload in generation.events():
            if kind == "sources":
                sources = payload
            elif kind == "done":
                end = payload
    except IndexerError as exc:
        raise api_error_from(exc) from None
    assert end is not None
    text = end.answer if end.answer is not None else end.notice
    return sources, end, text


async def _until_disconnect(
    request: Request, work: Awaitable[T], on_gone: Callable[[], None] | None = None
) -> T:
    """Await ``work``, but give up (cancelling it, and calling ``on_gone``) as soon as the client
    disconnects."""
    result: list[T] = []
    failure: list[BaseException] = []
    try:
        async with anyio.create_task_group() as group:

            async def run() -> None:
                try:
                    result.append(await work)
                except Exception as exc:  # re-raised below as itself, not in an ExceptionGroup
                    failure.append(exc)
                group.cancel_scope.cancel()

            async def watch() -> None:
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(run)
            group.start_soon(watch)
    finally:
        if not result and not failure and on_gone is not None:
            on_gone()
    if failure:
        raise failure[0]
    if not result:  # nobody is listening any more; uvicorn drops this response
        raise APIError(499, "the client closed the request")
    return result[0]


async def _query_events(generation: Generation) -> AsyncIterator[str]:
    sources: list[dict[str, Any]] = []
    try:
        async for kind, payload in generation.events():
            if kind == "sources":
                sources = payload
            elif kind == "token":
                yield sse.event({"text": payload}, "token")
            elif kind == "done":
                yield sse.event({"sources": sources}, "sources")
                yield sse.event(
                    {
                        "answer": payload.answer,
                        "notice": payload.notice,
                        "finish_reason": payload.finish_reason,
                    },
                    "done",
                )
    except Exception as exc:
        yield sse.event(_stream_error(exc), "error")
    finally:
        generation.cancel()


async def _chat_events(
    generation: Generation, completion_id: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return sse.event(body)

    sources: list[dict[str, Any]] = []
    try:
        yield chunk({"role": "assistant", "content": ""})
        async for kind, payload in generation.events():
            if kind == "sources":
                sources = payload
            elif kind == "token":
                yield chunk({"content": payload})
            elif kind == "done":
                if payload.answer is None and payload.notice:
                    yield chunk({"content": payload.notice})  # no LLM: say why, sources follow
                yield chunk({}, payload.finish_reason, sources=sources, notice=payload.notice)
                if include_usage:
                    body = {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": _usage(payload),
                    }
                    yield sse.event(body)
        yield sse.event("[DONE]")
    except Exception as exc:
        yield sse.event(_stream_error(exc))
    finally:
        generation.cancel()


def _stream_error(exc: Exception) -> dict[str, Any]:
    """Headers are already sent, so a failure midway becomes an error event, never a traceback."""
    if isinstance(exc, IndexerError):
        error = api_error_from(exc)
        return error_body(error.status, error.message, error.param, error.code)
    if isinstance(exc, APIError):
        return error_body(exc.status, exc.message, exc.param, exc.code)
    log.error("generation failed", exc_info=exc)
    return error_body(500, "generation failed (see the server log)")


def _split_messages(body: ChatCompletionRequest) -> tuple[str, list[dict[str, str]]]:
    texts: list[tuple[str, str]] = []
    for i, message in enumerate(body.messages):
        content = message.content
        if isinstance(content, list):
            if any(part.type != "text" for part in content):
                raise APIError(
                    400, f"messages.{i}.content: only text parts are supported", param=f"messages.{i}.content"
                )
            content = "".join(part.text or "" for part in content)
        check_unicode(content or "", f"messages.{i}.content")
        texts.append((message.role, content or ""))
    role, question = texts[-1]
    if role != "user":
        raise APIError(
            400,
            f"messages: the last message must be the user's question, got role {role!r}",
            param="messages",
        )
    history = [{"role": r, "content": c} for r, c in texts[:-1] if r in ("user", "assistant") and c]
    return question, history


def _usage(end: AnswerEnd) -> dict[str, int]:
    return {
        "prompt_tokens": end.prompt_tokens,
        "completion_tokens": end.completion_tokens,
        "total_tokens": end.prompt_tokens + end.completion_tokens,
    }


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":  # what the openai client asks for by default: little-endian float32
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector
