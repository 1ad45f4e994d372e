"""Errors as JSON in the OpenAI shape (``{"error": {"message", "type", "param", "code"}}``), which
the ``openai`` client and most UIs already parse; never a stack trace in a response."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexer.errors import IndexerError
from indexer.ways_in import Refused, refusal_from

log = logging.getLogger("indexer.server")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    503: "service_unavailable",
}


# A request the server answers with a 4xx/5xx JSON error: the refusal every way in shares.
APIError = Refused


def error_body(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": _encodable(message),
            "type": _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
            "param": None if param is None else _encodable(param),
            "code": code,
        }
    }


def _encodable(text: str) -> str:
    """A message may quote the request (an unknown field's name): a lone surrogate in it would
    make the JSON response itself fail to encode, turning a 400 into a 500. It becomes ``\\ud800``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(
        error_body(error.status, error.message, error.param, error.code),
        status_code=error.status,
        headers=error.headers,
    )


# The engine's errors mean the same over HTTP as over MCP.
api_error_from = refusal_from


def explain_validation(exc: RequestValidationError) -> APIError:
    """One message naming every offending field, and the first one as ``param``."""
    problems: list[str] = []
    params: list[str] = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        if error.get("type") == "json_invalid":
            detail = (error.get("ctx") or {}).get("error", "invalid JSON")
            position = f" at character {loc[0]}" if loc else ""
            problems.append(f"the request body is not valid JSON{position}: {detail}")
            params.append("body")
            continue
        # A tagged union adds the tag (e.g. 'str') to the location; the field is what users know.
        loc = [part for part in loc if part not in ("str", "list[str]", "list[int]", "list[ChatContentPart]")]
        field = ".".join(loc) or "body"
        if error.get("type") == "missing":
            message = "is required" if loc else "a JSON object body is required"
        elif error.get("type") == "extra_forbidden":
            message = "is not a known field"
        else:
            message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        problems.append(f"{field}: {message}")
        params.append(field)
    return APIError(
        400, "; ".join(dict.fromkeys(problems)) or "invalid request", param=params[0] if params else None
    )


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(explain_validation(exc))

    @app.exception_handler(IndexerError)
    async def _indexer_error(request: Request, exc: IndexerError) -> JSONResponse:
        return error_response(api_error_from(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no such endpoint: {request.method} {request.url.path}", 405: "method not allowed"}
        if exc.status_code == 400:  # FastAPI's own: a body that is not UTF-8 JSON
            error = APIError(400, f"the request body is not valid UTF-8 JSON ({exc.detail})", param="body")
        else:
            text = message.get(exc.status_code, str(exc.detail))
            error = APIError(exc.status_code, text, headers=exc.headers)
        return error_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug: the log gets the traceback, the client only a generic line.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(APIError(500, "internal server error (see the server log)"))
