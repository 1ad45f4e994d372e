"""A real Chroma server (`chroma run`) on a free loopback port, for the tests of server mode."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.live_server import free_port, wait_for_http

CHROMA = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")


@contextmanager
def running_chroma(data: Path) -> Iterator[int]:
    """Serve a Chroma database in ``data`` until the block ends; yields the port."""
    if CHROMA is None:
        pytest.skip("the `chroma` CLI (chromadb) is not installed")
    port = free_port()
    process = subprocess.Popen(
        [CHROMA, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", process, name="`chroma run`", timeout=60)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)
