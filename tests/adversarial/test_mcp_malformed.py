"""Issue 30, item 8: every malformed message to `indexer mcp` over stdio gets an answer: a JSON-RPC
error (-32700, -32600, -32602) or a tool error, never silence. A real `indexer mcp` subprocess,
raw lines on its stdin, every read bounded."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from indexer import Indexer
from tests.adversarial.helpers import small_config, write_docs
from tests.conftest import ROOT

pytest.importorskip("mcp.server.mcpserver", reason="needs the mcp extra: pip install 'indexer[mcp]'")
pytestmark = pytest.mark.slow  # one `indexer mcp` process for the module, about a minute

STARTUP_S = 120  # loads the embedder before it answers
ANSWER_S = 30


class McpProcess:
    def __init__(self, config: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "indexer", "mcp", str(config), "--set", "llm.provider=none"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env={key: value for key, value in os.environ.items() if key != "PYTHONSTARTUP"},
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.stderr: list[bytes] = []
        threading.Thread(target=self._pump, args=(self.process.stdout, self.lines.put), daemon=True).start()
        threading.Thread(
            target=self._pump, args=(self.process.stderr, self.stderr.append), daemon=True
        ).start()

    @staticmethod
    def _pump(stream: Any, sink: Any) -> None:
        for line in iter(stream.readline, b""):
            sink(line)

    def send(self, raw: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(raw)
        self.process.stdin.flush()

    def request(self, request_id: int, method: str, params: dict[str, Any] | None = None) -> bytes:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        return json.dumps(message).encode() + b"\n"

    def answer(self, timeout: float = ANSWER_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                stderr = b"".join(self.stderr).decode(errors="replace")
                raise AssertionError(f"no answer within {timeout} s; stderr: {stderr[-2000:]}") from None
            message = json.loads(line)
            if "method" not in message:  # not a notification or a request of the server's
                return message

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


@pytest.fixture(scope="module")
def mcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpProcess]:
    root = tmp_path_factory.mktemp("mcp")
    config = small_config(root / "cfg", write_docs(root / "docs"))
    Indexer.from_config(config).build()
    server = McpProcess(config)
    try:
        server.send(
            server.request(
                1,
                "initialize",
                {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "adversarial", "version": "0"},
                },
            )
        )
        assert server.answer(STARTUP_S)["id"] == 1
        server.send(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
        yield server
    finally:
        server.close()


def _search(request_id: int, arguments_json: str) -> bytes:
    return (
        f'{{"jsonrpc": "2.0", "id": {request_id}, "method": "tools/call", '
        f'"params": {{"name": "search", "arguments": {arguments_json}}}}}\n'
    ).encode()


def _error(answer: dict[str, Any], code: int, request_id: int | None) -> str:
    assert answer.get("id") == request_id and "error" in answer, answer
    assert answer["error"]["code"] == code, answer
    return str(answer["error"]["message"])


def test_wrong_jsonrpc_version_is_an_invalid_request(mcp: McpProcess) -> None:
    mcp.send(b'{"jsonrpc": "1.0", "id": 11, "method": "ping"}\n')
    assert "2.0" in _error(mcp.answer(), -32600, 11)


def test_a_lone_surrogate_in_a_question_is_a_tool_error(mcp: McpProcess) -> None:
    mcp.send(_search(12, '{"question": "rain \\ud800 gauge"}'))
    answer = mcp.answer()
    assert answer["id"] == 12 and answer["result"]["isError"] is True, answer
    text = answer["result"]["content"][0]["text"]
    assert "question" in text and "lone surrogate" in text


def test_nul_bytes_after_a_request_are_a_parse_error(mcp: McpProcess) -> None:
    mcp.send(mcp.request(13, "ping").rstrip(b"\n") + b"\x00\x00\x00\n")
    _error(mcp.answer(), -32700, None)
    mcp.send(b"\x00" * 64 + b"\n")
    _error(mcp.answer(), -32700, None)


def test_deeply_nested_arguments_are_refused(mcp: McpProcess) -> None:
    mcp.send(_search(14, '{"question": "desiccant", "filters": {"path": ' + "[" * 100 + "]" * 100 + "}}"))
    assert "nested" in _error(mcp.answer(), -32602, 14)
    mcp.send(_search(15, '{"question": "desiccant", "filters": ' + "[" * 100_000 + "]" * 100_000 + "}"))
    assert "nested" in _error(mcp.answer(), -32600, None)


def test_other_lines_the_sdk_would_drop_are_answered(mcp: McpProcess) -> None:
    mcp.send(b'{"jsonrpc": "2.0", "id": 16, "method": "ping"\n')  # truncated
    _error(mcp.answer(), -32700, None)
    mcp.send(b'{"jsonrpc": "2.0", "id": 17, "method": "tools/call", "params": {"name": "search", \xff}}\n')
    assert "UTF-8" in _error(mcp.answer(), -32700, None)
    mcp.send(b'[{"jsonrpc": "2.0", "id": 18, "method": "ping"}]\n')
    assert "batch" in _error(mcp.answer(), -32600, None)
    mcp.send(b'{"jsonrpc": "2.0", "id": true, "method": "ping"}\n')
    _error(mcp.answer(), -32600, None)
    mcp.send(b'{"jsonrpc": "2.0", "id": 19, "method": "ping", "params": [1]}\n')
    _error(mcp.answer(), -32600, 19)
    mcp.send(_search(20, '{"question": "desiccant", "filters": {"page": NaN}}'))
    _error(mcp.answer(), -32700, None)


def test_the_server_still_answers_after_them(mcp: McpProcess) -> None:
    mcp.send(mcp.request(21, "ping"))
    assert mcp.answer() == {"jsonrpc": "2.0", "id": 21, "result": {}}
    mcp.send(_search(22, '{"question": "How often is the desiccant replaced?", "top_k": 1}'))
    answer = mcp.answer()
    assert answer["id"] == 22 and not answer["result"].get("isError"), answer
    # A lone surrogate in a filter key is a tool error too.
    mcp.send(_search(23, '{"question": "desiccant", "filters": {"\\ud800": "x"}}'))
    answer = mcp.answer()
    assert answer["result"]["isError"] is True and "lone surrogate" in answer["result"]["content"][0]["text"]
