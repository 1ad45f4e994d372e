"""The documents behind the sources: the original file, and a cited PDF page as an image with the
passage highlighted. Both serve only files the index lists, under the rules the build lists them by
(``ingestion.sources.served_path``); anything else is 404, and never read."""

from __future__ import annotations

import mimetypes
from pathlib import PurePosixPath
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from indexer.server.context import Context
from indexer.server.documents import DEFAULT_WIDTH, MAX_WIDTH, MIN_WIDTH

router = APIRouter(tags=["documents"])

# A saved web page served from this origin could run its scripts against the API: every original
# but a PDF (whose viewer a sandbox would block) and an image is served as a sandboxed document.
_SANDBOX = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
_SHOWN_AS_IS = ("application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "image/tiff")
_PASSAGE_CHARS = 20_000


@router.get("/v1/original/{doc_id:path}", response_class=FileResponse)
async def original(doc_id: str, context: Context) -> FileResponse:
    """The original file of an indexed document, by its path relative to ``data.input_dir`` (as
    sources name it). A path outside the folder, a link leading out of it, or a file the index does
    not list is 404. Link to ``#page=N`` to open a PDF at a page."""
    path = await context.in_thread(context.service.original_path, doc_id)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(PurePosixPath(doc_id).name)}",
        "Cache-Control": "private, no-cache",
        "Referrer-Policy": "no-referrer",
    }
    if media_type not in _SHOWN_AS_IS:
        headers["Content-Security-Policy"] = _SANDBOX
    return FileResponse(path, media_type=media_type, headers=headers)


@router.get(
    "/v1/page-image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The page as a PNG"}},
)
async def page_image(
    context: Context,
    doc_id: Annotated[
        str, Query(description="The PDF's path relative to data.input_dir, as sources name it")
    ],
    page: Annotated[int, Query(ge=1, le=100_000, description="The page, from 1")],
    chunk_id: Annotated[str | None, Query(max_length=2000, description="The passage to highlight")] = None,
    text: Annotated[
        str | None, Query(max_length=_PASSAGE_CHARS, description="Or the passage's text to highlight")
    ] = None,
    width: Annotated[
        int, Query(ge=MIN_WIDTH, le=MAX_WIDTH, description="Image width in pixels")
    ] = DEFAULT_WIDTH,
) -> Response:
    """Page ``page`` of an indexed PDF as a PNG rendered on the server, the passage (``chunk_id``
    of a source, or ``text``) highlighted where it is found on the page."""
    png = await context.in_thread(context.service.page_image, doc_id, page, chunk_id, text, width)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})
