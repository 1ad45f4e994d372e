"""Issue 28, item 5: a source opens its original file and, for a PDF, the cited page as an image with
the passage highlighted, over real HTTP; nothing outside ``data.input_dir`` is ever served."""

from __future__ import annotations

import http.client
import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image, ImageChops

from indexer import Indexer
from tests.adversarial.helpers import small_config
from tests.support.live_server import live_server
from tests.support.pdfs import write_pdf

pytestmark = pytest.mark.slow  # builds an index of its own

KEY = "documents-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
SECRET = "zanzibar-secret-line: never served\n"
RATES = [
    ["Country", "Per diem", "Hotel cap per night"],
    ["Germany", "EUR 38", "EUR 140"],
    ["France", "EUR 41", "EUR 152"],
]
FILLER = "The travel office answers questions about trips on weekdays between nine and five. " * 3


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("documents")
    docs, outside = root / "docs", root / "outside"
    (docs / "guides").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    write_pdf(
        docs / "travel.pdf",
        [[FILLER, RATES, "Receipts for hotels are kept for ten years by the finance office."], [FILLER]],
    )
    (docs / "notes.txt").write_text("The desiccant pack in the mast is replaced every six months.\n")
    (docs / "guides" / "battery.txt").write_text("Charge the logger battery before winter storage.\n")
    (docs / "swapped.txt").write_text("A file that becomes a link to outside once indexed.\n")
    (docs / "leak.txt").symlink_to(outside / "secret.txt")  # refused by the build too
    return docs, outside


@pytest.fixture(scope="module")
def indexer(folders: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Indexer:
    docs, outside = folders
    config = small_config(
        tmp_path_factory.mktemp("cfg"),
        docs,
        data={"input_dir": str(docs), "follow_symlinks": True},
        chunking={"chunk_size": 48, "chunk_overlap": 0},
        server={"api_key": KEY},
    )
    ix = Indexer.from_config(config)
    summary = ix.build()
    assert "leak.txt" in {s["file"] for s in summary.skipped}
    # Indexed, then turned into a link leading out: the index lists it, the rules refuse it.
    (docs / "swapped.txt").unlink()
    (docs / "swapped.txt").symlink_to(outside / "secret.txt")
    return ix


@pytest.fixture(scope="module")
def server(indexer: Indexer) -> Iterator[str]:
    from indexer.server import create_app

    with live_server(create_app(indexer)) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=AUTH, timeout=60) as http:
        yield http


def test_the_original_of_an_indexed_file_is_served(client: httpx.Client, folders: tuple[Path, Path]) -> None:
    docs, _ = folders
    notes = client.get("/v1/original/notes.txt")
    assert notes.status_code == 200 and notes.content == (docs / "notes.txt").read_bytes()
    assert notes.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in notes.headers["content-security-policy"]  # never runs as this origin's page
    assert client.get("/v1/original/guides/battery.txt").status_code == 200
    pdf = client.get("/v1/original/travel.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content == (docs / "travel.pdf").read_bytes()
    assert httpx.get(f"{client.base_url}/v1/original/notes.txt").status_code == 401  # the key, as elsewhere


@pytest.mark.parametrize(
    "path",
    [
        "%2e%2e/outside/secret.txt",
        "%2E%2E%2Foutside%2Fsecret.txt",
        "guides/%2e%2e/%2e%2e/outside/secret.txt",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        "leak.txt",  # a link out of the folder, refused by the build
        "swapped.txt",  # indexed, now a link out of the folder
        "missing.txt",
        "guides",
        "notes.txt%00.pdf",
    ],
)
def test_nothing_outside_the_folder_is_served(client: httpx.Client, path: str) -> None:
    response = client.get(f"/v1/original/{path}")
    assert response.status_code in (400, 404), path
    assert "zanzibar" not in response.text and "root:" not in response.text
    assert response.json()["error"]["message"]


def test_a_literal_dot_dot_path_is_refused(server: str, folders: tuple[Path, Path]) -> None:
    # http.client sends the path as written (httpx would resolve the dots before sending).
    url = urlsplit(server)
    for path in ("/v1/original/../outside/secret.txt", "/v1/original/guides/../../outside/secret.txt"):
        connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port)
        connection.request("GET", path, headers=AUTH)
        response = connection.getresponse()
        body = response.read().decode()
        connection.close()
        assert response.status in (400, 404) and "zanzibar" not in body, path


def test_a_linked_folder_is_not_entered(client: httpx.Client, folders: tuple[Path, Path]) -> None:
    docs, outside = folders
    (outside / "battery.txt").write_text(SECRET)
    moved = docs.parent / "guides-moved"
    shutil.move(docs / "guides", moved)
    try:
        (docs / "guides").symlink_to(outside, target_is_directory=True)
        response = client.get("/v1/original/guides/battery.txt")
        assert response.status_code == 404 and "zanzibar" not in response.text
    finally:
        (docs / "guides").unlink()
        shutil.move(moved, docs / "guides")


def _png(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content)).convert("RGB")


def _table_chunk(indexer: Indexer) -> Any:
    passages = indexer.file_passages("travel.pdf") or []
    chunk = next(h for h in passages if "| Germany | EUR 38" in h.text)
    assert chunk.metadata["page"] == 1
    return chunk


def test_a_cited_page_is_an_image_with_the_passage_highlighted(
    client: httpx.Client, indexer: Indexer
) -> None:
    import pdfplumber

    chunk = _table_chunk(indexer)
    params = {"doc_id": "travel.pdf", "page": 1, "width": 600}
    plain = _png(client.get("/v1/page-image", params=params))
    marked = _png(client.get("/v1/page-image", params={**params, "chunk_id": chunk.id}))
    assert plain.size == marked.size and plain.width == 600 and 800 < plain.height < 900  # A4
    # The highlight lies over the passage's words, and nowhere near the end of the page.
    with pdfplumber.open(Path(indexer.config.data.input_dir) / "travel.pdf") as pdf:
        page = pdf.pages[0]
        word = next(w for w in page.extract_words() if w["text"] == "Germany")
        scale = 600 / page.width
    x, y = int((word["x0"] + 2) * scale), int((word["top"] + word["bottom"]) / 2 * scale)
    assert plain.getpixel((x - 2, y)) != marked.getpixel((x - 2, y))
    diff = ImageChops.difference(plain, marked).getbbox()
    assert diff is not None and diff[1] <= y <= diff[3] and diff[3] < plain.height * 0.6
    by_text = _png(client.get("/v1/page-image", params={**params, "text": "Germany EUR 38 EUR 140"}))
    assert by_text.getpixel((x - 2, y)) == marked.getpixel((x - 2, y))


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"doc_id": "travel.pdf", "page": 3}, 404),  # two pages
        ({"doc_id": "travel.pdf", "page": 0}, 400),
        ({"doc_id": "travel.pdf", "page": 1, "width": 100_000}, 400),
        ({"doc_id": "travel.pdf", "page": 1, "chunk_id": "notes.txt::0::0"}, 404),
        ({"doc_id": "notes.txt", "page": 1}, 400),
        ({"doc_id": "../outside/secret.pdf", "page": 1}, 404),
        ({"doc_id": "/etc/passwd.pdf", "page": 1}, 404),
    ],
)
def test_a_page_that_cannot_be_shown_is_a_clear_4xx(client: httpx.Client, params: dict, status: int) -> None:
    response = client.get("/v1/page-image", params=params)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]
