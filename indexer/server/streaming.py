"""Answers as they leave the generation queue: collected whole, or streamed as Server-Sent Events
(our ``/v1/query`` events, or OpenAI chat-completion chunks), and abandoned the moment the client
disconnects."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
from fastapi import Request

from indexer.errors import IndexerError
from indexer.server import sse
from indexer.server.errors import APIError, api_error_from, error_body, log
from indexer.server.queue import Generation
from indexer.server.service import AnswerEnd

T = TypeVar("T")


async def collect(generation: Generation) -> tuple[list[dict[str, Any]], AnswerEnd, str | None]:
    """The sources, the end of the answer, and its text (the notice when there is no answer)."""
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


async def until_disconnect(
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


async def query_events(generation: Generation) -> AsyncIterator[str]:
    """``/v1/query`` with ``stream: true``: ``token`` events, then ``sources``, then ``done``."""
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
                        "abstained": payload.abstained,
                        "sentences": payload.sentences,
                    },
                    "done",
                )
    except Exception as exc:
        yield sse.event(stream_error(exc), "error")
    finally:
        generation.cancel()


async def chat_events(
    generation: Generation, completion_id: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[str]:
    """OpenAI ``chat.completion.chunk`` events; the sources ride on the final chunk."""

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
                yield chunk(
                    {},
                    payload.finish_reason,
                    sources=sources,
                    notice=payload.notice,
                    abstained=payload.abstained,
                    sentences=payload.sentences,
                )
                if include_usage:
                    body = {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage(payload),
                    }
                    yield sse.event(body)
        yield sse.event("[DONE]")
    except Exception as exc:
        yield sse.event(stream_error(exc))
    finally:
        generation.cancel()


def stream_error(exc: Exception) -> dict[str, Any]:
    """Headers are already sent, so a failure midway becomes an error event, never a traceback."""
    if isinstance(exc, IndexerError):
        error = api_error_from(exc)
        return error_body(error.status, error.message, error.param, error.code)
    if isinstance(exc, APIError):
        return error_body(exc.status, exc.message, exc.param, exc.code)
    log.error("generation failed", exc_info=exc)
    return error_body(500, "generation failed (see the server log)")


def usage(end: AnswerEnd) -> dict[str, int]:
    """The OpenAI ``usage`` object of a finished answer."""
    return {
        "prompt_tokens": end.prompt_tokens,
        "completion_tokens": end.completion_tokens,
        "total_tokens": end.prompt_tokens + end.completion_tokens,
    }
