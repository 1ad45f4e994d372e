"""An index's location as messages name it: a folder, or a URL naming the server and collection
(never the ``chroma:`` left of a URL read as a file path)."""

from __future__ import annotations

from pathlib import Path

from indexer.config.models import VectorStoreConfig
from indexer.index.chroma import location


def test_a_server_index_is_located_by_host_port_and_collection() -> None:
    config = VectorStoreConfig(host="127.0.0.1", port=8123, collection="shared")
    assert location(config) == "chroma://127.0.0.1:8123/shared"


def test_an_embedded_index_is_located_by_its_folder(tmp_path: Path) -> None:
    assert location(VectorStoreConfig(persist_dir=tmp_path / "storage")) == str(tmp_path / "storage")
