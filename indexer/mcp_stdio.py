"""MCP over stdio with every incoming line checked before the ``mcp`` SDK sees it.

The SDK (2.x, ``mcp.server.stdio``) parses each line with pydantic and, when that fails, hands the
exception to its dispatcher, which logs it at debug level and drops it: a client that sent
``"jsonrpc": "1.0"``, a lone surrogate (``"\\ud800"``, which the SDK's JSON parser refuses), a line
with trailing NUL bytes or arguments nested past its parser's depth never hears back and waits for
its own timeout. JSON-RPC 2.0 asks for an answer: -32700 when the line is not JSON, -32600 when it
is no valid request, -32602 for bad params. So ``GuardedStdin`` reads the lines itself, answers the
ones the SDK would drop through the SDK's own write stream (one writer: no torn frames), and passes
on only lines the SDK's parser accepts. A lone surrogate in a ``tools/call``'s arguments is a tool
error instead, as the MCP spec has a tool's input errors reported, so the model sees the message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from indexer.query.text import unicode_problem

log = logging.getLogger("indexer.mcp")

PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602
# Real MCP messages nest a few levels; the SDK's parser gives up somewhere past 100.
MAX_DEPTH = 64
# A line is read whole before it is parsed: bounded, so that a stream without newlines cannot
# fill memory.
MAX_LINE_BYTES = 8 * 1024 * 1024
_TOO_LONG = object()


class Refusal(Exception):
    """A line that gets an answer here instead of reaching the SDK."""

    def __init__(self, code: int, message: str, request_id: int | str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.request_id = code, message, request_id
        self.tool_error = False


def check_line(raw: bytes) -> str | None:
    """The line's text, for the SDK; ``None`` for a blank line. Raises ``Refusal`` for a line the
    SDK would drop."""
    body = raw.removesuffix(b"\n").removesuffix(b"\r")
    if not body.strip():
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refusal(
            PARSE_ERROR,
            f"Parse error: the line is not UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start})",
        ) from None
    try:
        message = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise Refusal(INVALID_REQUEST, f"Invalid Request: nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # JSONDecodeError included; NUL bytes after the JSON land here
        raise Refusal(PARSE_ERROR, f"Parse error: {exc}") from None

    request_id = _request_id(message)
    if isinstance(message, dict) and "method" in message and "id" in message and request_id is None:
        # The SDK would read it as a notification and never answer: MCP ids are never null.
        raise Refusal(
            INVALID_REQUEST,
            f"Invalid Request: id must be a string or an integer, got {json.dumps(message['id'])}",
        )
    depth, surrogate = _walk(message)
    if depth > MAX_DEPTH:
        in_params = _walk(_params(message))[0] + 1 >= depth
        code = INVALID_PARAMS if in_params else INVALID_REQUEST
        label = "Invalid params" if code == INVALID_PARAMS else "Invalid Request"
        raise Refusal(code, f"{label}: nested more than {MAX_DEPTH} levels deep", request_id)
    if surrogate is not None:
        path, problem = surrogate
        tool_call = isinstance(message, dict) and message.get("method") == "tools/call"
        tool_call = tool_call and request_id is not None
        if tool_call and path[:2] == ["params", "arguments"]:
            refusal = Refusal(0, f"{'.'.join(path[2:]) or 'arguments'}: {problem}", request_id)
            refusal.tool_error = True
            raise refusal
        code = INVALID_PARAMS if path[:1] == ["params"] else INVALID_REQUEST
        label = "Invalid params" if code == INVALID_PARAMS else "Invalid Request"
        raise Refusal(code, f"{label}: {'.'.join(path)}: {problem}", request_id)

    import mcp_types as types
    from pydantic import ValidationError

    try:
        # Exactly the SDK's own parse: a line that passes here is one the SDK takes.
        types.jsonrpc_message_adapter.validate_json(text, by_name=False)
    except ValidationError as exc:
        problem = _envelope_problem(message, exc)
        raise Refusal(INVALID_REQUEST, f"Invalid Request: {problem}", request_id) from None
    return text


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _request_id(message: Any) -> int | str | None:
    if isinstance(message, dict):
        value = message.get("id")
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return value
    return None


def _params(message: Any) -> Any:
    return message.get("params") if isinstance(message, dict) else None


def _walk(root: Any) -> tuple[int, tuple[list[str], str] | None]:
    """The nesting depth of ``root`` and the first string (key or value) that is no valid
    Unicode text, with its path; iterative, so depth costs no stack."""
    deepest, found = 0, None
    stack: list[tuple[Any, int, list[str]]] = [(root, 1, [])]
    while stack:
        node, depth, path = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH and found is not None:
            break
        if isinstance(node, dict):
            for key, value in node.items():
                if found is None and (problem := unicode_problem(key)) is not None:
                    found = ([*path, repr(key)], f"the key {problem}")
                stack.append((value, depth + 1, [*path, key]))
        elif isinstance(node, list):
            stack.extend((value, depth + 1, [*path, str(i)]) for i, value in enumerate(node))
        elif isinstance(node, str) and found is None and (problem := unicode_problem(node)) is not None:
            found = (path, problem)
    return deepest, found


def _envelope_problem(message: Any, exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(message, list):
        return "a batch (a JSON array) is not supported; send one message per line"
    if not isinstance(message, dict):
        return f"a message must be a JSON object, got {type(message).__name__}"
    if message.get("jsonrpc") != "2.0":
        return f'"jsonrpc" must be "2.0", got {message.get("jsonrpc")!r}'
    errors: list[Any] = list(exc.errors()) if isinstance(exc, ValidationError) else []
    problems = (f"{'.'.join(str(p) for p in e['loc'][1:]) or 'message'}: {e['msg']}" for e in errors)
    detail = "; ".join(list(dict.fromkeys(problems))[:3])
    return f"not a JSON-RPC 2.0 request, notification or response ({detail})"


class GuardedStdin:
    """The lines of ``source`` as ``stdio_server(stdin=...)`` iterates them, with refused lines
    answered on the write stream given to ``answer_through``."""

    def __init__(self, source: BinaryIO) -> None:
        import anyio

        self._source = source
        self._replies: Any = None
        self._ready = anyio.Event()

    def answer_through(self, write_stream: Any) -> None:
        self._replies = write_stream
        self._ready.set()

    def __aiter__(self) -> GuardedStdin:
        return self

    async def __anext__(self) -> str:
        import anyio

        while True:
            raw = await anyio.to_thread.run_sync(self._read_line, abandon_on_cancel=True)
            if raw is None:
                raise StopAsyncIteration
            try:
                if not isinstance(raw, bytes):
                    raise Refusal(INVALID_REQUEST, f"Invalid Request: a message over {MAX_LINE_BYTES} bytes")
                text = check_line(raw)
            except Refusal as refusal:
                await self._answer(refusal)
                continue
            if text is not None:
                return text

    def _read_line(self) -> bytes | object | None:
        line = self._source.readline(MAX_LINE_BYTES + 1)
        if not line:
            return None
        if len(line) > MAX_LINE_BYTES:
            while line and not line.endswith(b"\n"):  # skip to the next message
                line = self._source.readline(MAX_LINE_BYTES)
            return _TOO_LONG
        return line

    async def _answer(self, refusal: Refusal) -> None:
        import anyio
        import mcp_types as types
        from mcp.shared.message import SessionMessage

        log.warning("refused an MCP message: %s", refusal.message)
        message: types.JSONRPCResponse | types.JSONRPCError
        if refusal.tool_error:
            assert refusal.request_id is not None
            result = {"content": [{"type": "text", "text": refusal.message}], "isError": True}
            message = types.JSONRPCResponse(jsonrpc="2.0", id=refusal.request_id, result=result)
        else:
            error = types.ErrorData(code=refusal.code, message=refusal.message)
            message = types.JSONRPCError(jsonrpc="2.0", id=refusal.request_id, error=error)
        await self._ready.wait()
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self._replies.send(SessionMessage(message))


@contextlib.contextmanager
def claimed_stdin() -> Iterator[BinaryIO]:
    """The wire (fd 0) on a private descriptor, with fd 0 on the null device meanwhile, as the
    SDK does for the streams it opens itself: a child process or library reading stdin gets EOF
    instead of protocol bytes."""
    private = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        # closefd=False: a worker thread may still block reading it after the server stops.
        yield os.fdopen(private, "rb", closefd=False)
    finally:
        os.dup2(private, 0)


async def serve_stdio(server: Any) -> None:
    """``MCPServer.run_stdio_async``, with the stdin lines guarded (see the module's docstring)."""
    from mcp.server.stdio import stdio_server

    lowlevel = server._lowlevel_server  # what the SDK's own run_stdio_async runs
    with claimed_stdin() as source:
        guard = GuardedStdin(source)
        async with stdio_server(stdin=guard) as (read_stream, write_stream):  # type: ignore[arg-type]
            guard.answer_through(write_stream)
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
