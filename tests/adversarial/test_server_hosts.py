"""Issue 10, item 3: a web page cannot read a no-key server on loopback (DNS rebinding), the docs
pages load nothing from the internet, and a no-key server shows no absolute path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer import Indexer
from tests.support.live_server import live_server

QUESTION = {"question": "How often is the desiccant replaced?", "top_k": 2}


@pytest.fixture(scope="module")
def server(built: Path) -> Iterator[str]:
    from indexer.server import create_app

    indexer = Indexer.from_config(built, {"server.allowed_hosts": ["rag.internal"]})
    with live_server(create_app(indexer)) as url:
        yield url


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("attacker.example", 400),
        ("attacker.example:8000", 400),
        ("127.0.0.1.attacker.example", 400),
        ("localhost:1234", 200),
        ("127.0.0.1", 200),
        ("[::1]:8000", 200),
        ("rag.internal:443", 200),  # server.allowed_hosts extends the list
    ],
)
def test_only_known_host_names_are_answered(server: str, host: str, status: int) -> None:
    for method, path, body in (("GET", "/v1/index", None), ("POST", "/v1/retrieve", QUESTION)):
        response = httpx.request(method, f"{server}{path}", json=body, headers={"Host": host}, timeout=60)
        assert response.status_code == status, response.text
        if status == 400:
            error = response.json()["error"]
            assert error["code"] == "invalid_host" and "server.allowed_hosts" in error["message"]
            assert "desiccant" not in response.text


def test_docs_are_off_and_the_index_shows_no_absolute_path(server: str, built: Path) -> None:
    # Swagger UI and ReDoc would load scripts from a CDN: off unless server.docs is set.
    assert httpx.get(f"{server}/docs").status_code == 404
    assert httpx.get(f"{server}/redoc").status_code == 404
    assert "/v1/retrieve" in httpx.get(f"{server}/openapi.json").json()["paths"]

    body = httpx.get(f"{server}/v1/index", timeout=60).text
    assert str(built.parent) not in body and str(Path.home()) + "/" not in body
    info = httpx.get(f"{server}/v1/index", timeout=60).json()
    assert info["vector_store"] == "Chroma folder storage"
    assert info["manifest"]["loader"]["input_dir"] == "docs"
    assert set(info["manifest"]["files"]) == {"mast.txt", "radio.md", "guides/battery.txt"}
