"""Run the real HTTP app with uvicorn on a free loopback port, in a thread of the test process."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def wait_for_http(
    url: str,
    process: subprocess.Popen[Any],
    *,
    name: str,
    timeout: float,
    output: Callable[[], str] | None = None,
) -> None:
    """Wait for a server started as ``process`` until ``url`` answers 200; fail the test, with the
    server's ``output`` when there is one, if it exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"{name} exited" + (f": {output()}" if output is not None else ""))
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{name} did not start within {timeout:.0f} s")
        time.sleep(0.2)


def wait_until(predicate: Any, timeout: float = 20.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def sse_events(response: httpx.Response) -> Iterator[tuple[str | None, str]]:
    """(event name, data) pairs of a Server-Sent Events response, as they arrive."""
    name: str | None = None
    data: list[str] = []
    for line in response.iter_lines():
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = None, []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


@contextmanager
def llama_cpp_server(
    model: Any, alias: str, log: Any, *, n_ctx: int, threads: int | None = None
) -> Iterator[str]:
    """``python -m llama_cpp.server`` serving ``model`` as ``alias`` on a free loopback port until
    the block ends; yields its ``/v1`` base URL. Its output goes to ``log``."""
    import sys

    port = free_port()
    args = ["--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx)]
    args += ["--model_alias", alias] + (["--n_threads", str(threads)] if threads else [])
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", *args], stdout=out, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_http(
            f"{base_url}/models",
            process,
            name="llama_cpp.server",
            timeout=120,
            output=lambda: log.read_text(errors="replace")[-2000:],
        )
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)
