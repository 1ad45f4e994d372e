"""Keyword search over an index on a real Chroma server (``chroma run`` on loopback): no local
folder, the keyword index is rebuilt in memory from the server's chunks per manifest state."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer import Indexer
from tests.conftest import write_config
from tests.support.retrieval_corpus import IDENTIFIER_QUERY, write_corpus

CHROMA = Path(sys.executable).parent / "chroma"


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[int]:
    if not CHROMA.exists() and shutil.which("chroma") is None:
        pytest.skip("the chroma CLI is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [str(CHROMA if CHROMA.exists() else "chroma"), "run", "--path", str(tmp_path / "chroma"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("chroma run did not start")
            time.sleep(0.3)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_keyword_search_on_a_chroma_server_follows_builds(tmp_path: Path, chroma_server: int) -> None:
    docs = write_corpus(tmp_path / "docs")
    config = write_config(
        tmp_path,
        docs,
        llm={"provider": "none"},
        vector_store={"persist_dir": None, "host": "127.0.0.1", "port": chroma_server},
    )
    Indexer.from_config(config).build()
    ix = Indexer.from_config(config, {"retrieval.mode": "bm25"})
    stream = ix.stream(IDENTIFIER_QUERY, top_k=1)
    assert [s.file for s in stream.sources] == ["parts/fan.md"] and stream.notice is None
    assert not list(tmp_path.glob("**/keyword-*"))  # nothing written locally

    (docs / "parts/heater.md").write_text("Heater element, part number HTR-0042-Z, 12 V.")
    Indexer.from_config(config).build()
    fresh = Indexer.from_config(config, {"retrieval.mode": "bm25"})
    assert [s.file for s in fresh.retrieve("HTR-0042-Z", top_k=1)] == ["parts/heater.md"]
