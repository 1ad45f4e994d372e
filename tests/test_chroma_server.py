"""The index on a real Chroma server (`chroma run`, started here on a free loopback port)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import yaml

from indexer import Indexer
from tests.conftest import SAMPLE_DIR, run_cli, write_config
from tests.support.live_server import free_port, live_server


def _server_config(folder: Path, port: int, model: Path | None = None) -> Path:
    config = write_config(folder, SAMPLE_DIR, model_path=model)
    data = yaml.safe_load(config.read_text())
    data["vector_store"] = {"host": "127.0.0.1", "port": port, "collection": "shared"}
    config.write_text(yaml.safe_dump(data))
    return config


@pytest.fixture(scope="module")
def server_index(chroma_port: int, tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Path:
    config = _server_config(tmp_path_factory.mktemp("server-index"), chroma_port, tiny_gguf)
    summary = Indexer.from_config(config).build()
    assert (summary.documents, summary.added) == (10, 10)
    return config


@pytest.mark.slow
def test_build_and_query_on_a_chroma_server(server_index: Path) -> None:
    ix = Indexer.from_config(server_index)
    sources = ix.retrieve("How is the rain gauge calibrated?", top_k=3)
    assert len(sources) == 3 and "guides/calibration.md" in [s.file for s in sources]
    # Nothing is written beside the config: vectors and manifest both live on the server.
    assert not (server_index.parent / "storage").exists()
    manifest = ix.index.manifest_file.load()
    assert manifest is not None and len(manifest.files) == 10
    again = ix.build()
    assert (again.unchanged, again.chunks_embedded) == (10, 0)
    status = ix.status()  # the server and collection, never the "chroma:" of a URL read as a path
    assert status.index.startswith("chroma://127.0.0.1:") and status.index.endswith("/shared")


@pytest.mark.slow
def test_a_second_machine_sees_the_same_index_through_the_cli(server_index: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere.yaml"
    copy.write_text(server_index.read_text())  # same server, another folder: nothing local
    result = run_cli("query", str(copy), "How is the rain gauge calibrated?", "--retrieve-only", "--json")
    assert result.returncode == 0, result.stderr
    assert '"file": "guides/calibration.md"' in result.stdout


def test_the_http_service_serves_an_index_on_a_chroma_server(server_index: Path) -> None:
    from indexer.server import create_app

    with live_server(create_app(Indexer.from_config(server_index))) as url:
        info = httpx.get(f"{url}/v1/index").json()
        assert info["counts"]["documents"] == 10 and info["vector_store"].startswith("Chroma server http://")
        response = httpx.post(f"{url}/v1/retrieve", json={"question": "rain gauge", "top_k": 2})
        assert len(response.json()["sources"]) == 2


@pytest.mark.parametrize("command", ["build", "query"])
def test_a_server_that_is_down_is_a_clear_error(tmp_path: Path, command: str) -> None:
    config = _server_config(tmp_path, free_port())  # nothing listens there
    args = ["build", str(config)] if command == "build" else ["query", str(config), "anything"]
    started = time.monotonic()
    result = run_cli(*args, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cannot open Chroma server http://127.0.0.1:" in result.stderr
    assert "Is the server running" in result.stderr and "vector_store.host" in result.stderr
    assert time.monotonic() - started < 120
