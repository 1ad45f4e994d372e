"""Keyword search over an index on a real Chroma server (``chroma run`` on loopback): no local
folder, the keyword index is rebuilt in memory from the server's chunks per manifest state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer import Indexer
from tests.conftest import write_config
from tests.support.chroma_server import running_chroma
from tests.support.retrieval_corpus import IDENTIFIER_QUERY, write_corpus


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[int]:
    with running_chroma(tmp_path / "chroma") as port:
        yield port


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
