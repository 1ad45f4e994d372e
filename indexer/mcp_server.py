"""``indexer mcp CONFIG``: the index as a Model Context Protocol server, for agents and editors.

Built on the official ``mcp`` SDK (v2, ``MCPServer``); needs the ``mcp`` extra
(``pip install 'indexer[mcp]'``). Tools ``search`` and ``ask`` and the resources are thin calls into
``indexer.api.Indexer``, the same core as the CLI and the HTTP server, under the same policy as the
HTTP server (``indexer.ways_in``: its limits, generation queue and error mapping). stdio by default;
streamable HTTP on loopback with ``--http``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from pydantic import Field

from indexer.api import Indexer
from indexer.config.models import RetrievalMode
from indexer.errors import IndexerError
from indexer.query.filters import FilterValue as ScalarFilterValue
from indexer.query.filters import check_filters
from indexer.ways_in import Refused, check_question, check_top_k, ways_in

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from mcp_types import Resource

log = logging.getLogger("indexer.mcp")

STATUS_URI = "indexer://status"
FILE_URI_PREFIX = "indexer://files/"
FILE_URI_TEMPLATE = FILE_URI_PREFIX + "{+path}"

FilterValue = str | int | float | bool | list[str | int | float | bool]

# Argument types of the tools: module-level, so the SDK can resolve them into the tools' schemas.
Question = Annotated[str, Field(min_length=1, description="The question or search text.")]
TopK = Annotated[int | None, Field(ge=1, description="Passages to return (default: query.top_k).")]
ModeArg = Annotated[
    RetrievalMode | None,
    Field(description="Retrieval mode: vector, bm25 or hybrid (default: retrieval.mode)."),
]
Filters = Annotated[
    dict[str, FilterValue] | None,
    Field(description='Metadata filters, e.g. {"path": "guides/*", "type": "pdf", "page": 3}.'),
]


def require_mcp_extra() -> None:
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ImportError as exc:
        raise IndexerError(
            f"`indexer mcp` needs the mcp extra ({exc.name} is missing): pip install 'indexer[mcp]'"
        ) from None


def _checked_filters(filters: dict[str, FilterValue] | None) -> dict[str, ScalarFilterValue] | None:
    """The tools' schema lets a list through so that the engine's own message says why one key
    cannot take several values (a ``ConfigError``); once checked, every value is a scalar."""
    check_filters(filters)
    return None if filters is None else {k: v for k, v in filters.items() if not isinstance(v, list)}


def file_uri(doc_id: str) -> str:
    return FILE_URI_PREFIX + quote(doc_id, safe="/")


class IndexTools:
    """The tools and resources over one ``Indexer``, with the policy it shares with the HTTP
    service (``indexer.ways_in``): the same limits, generation queue and error mapping. Methods, so
    the SDK reads each tool's schema from its signature; ``create_server`` registers them."""

    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer
        self.ways_in = ways_in(indexer)

    async def search(
        self, question: Question, top_k: TopK = None, mode: ModeArg = None, filters: Filters = None
    ) -> dict[str, Any]:
        """Find the passages of the indexed documents that best match the question, best first:
        each with its file, page or section, score and text."""
        with _as_tool_error():
            question, top_k = self._checked(question, top_k)
            found = await self.ways_in.in_thread(
                lambda: self.indexer.retrieve(question, top_k, filters=_checked_filters(filters), mode=mode)
            )
        result: dict[str, Any] = {"passages": [_passage(s) for s in found]}
        if found.notice:
            result["notice"] = found.notice
        return result

    async def ask(
        self, question: Question, top_k: TopK = None, mode: ModeArg = None, filters: Filters = None
    ) -> dict[str, Any]:
        """Answer the question from the indexed documents, citing passages as [n] (n = a source's
        rank). `sentences` gives each answer sentence's citations (`cited_by`: the model's own, or
        added by the system) and `supported: false` with a `reason` where no passage backs it.
        `abstained`: no passage was relevant enough, so the LLM was not asked. Without an LLM,
        `answer` is null, `notice` says why, and the sources are returned."""

        def answer() -> dict[str, Any]:
            result = self.indexer.query(question, top_k, filters=_checked_filters(filters), mode=mode)
            data = result.to_dict()
            data["sources"] = [_passage(s) for s in result.sources]
            if result.answer is None:  # llm.provider none carries no notice of its own
                data["notice"] = result.notice or "no LLM is configured (llm.provider: none): sources only"
            return data

        with _as_tool_error():
            question, top_k = self._checked(question, top_k)
            return await self.ways_in.generated(answer)

    async def status(self) -> str:
        """The index's manifest summary, counts, and files changed since the last build."""
        with _as_resource_error():
            report = await self.ways_in.in_thread(self.indexer.status)
        return json.dumps(report.to_dict(), indent=1)

    async def indexed_file(self, path: str) -> str:
        """An indexed file's passages, in reading order, by its path relative to data.input_dir."""
        with _as_resource_error():
            hits = await self.ways_in.in_thread(self.indexer.file_passages, path)
        if hits is None:
            from mcp.server.mcpserver.exceptions import ResourceError

            raise ResourceError(f"{path!r} is not an indexed file (see the resource list)")
        parts = []
        for n, hit in enumerate(hits, start=1):
            where = ", ".join(f"{k} {hit.metadata[k]}" for k in ("page", "section") if hit.metadata.get(k))
            parts.append(f"--- passage {n}{f' ({where})' if where else ''} ---\n{hit.text}")
        return f"{path}: {len(hits)} passages\n\n" + "\n\n".join(parts)

    async def file_resources(self) -> list[Resource]:
        """One resource per indexed file: the set changes with every build."""
        from mcp_types import Resource

        files = await self.ways_in.in_thread(self.indexer.indexed_files)
        return [
            Resource(
                uri=file_uri(doc_id),
                name=doc_id,
                description=f"The indexed passages of {doc_id} ({chunks} chunks)",
                mime_type="text/plain",
            )
            for doc_id, chunks in files.items()
        ]

    def _checked(self, question: str, top_k: int | None) -> tuple[str, int | None]:
        settings = self.ways_in.settings
        return check_question(question, settings), check_top_k(top_k, settings)


@contextlib.contextmanager
def _as_tool_error() -> Iterator[None]:
    """A refusal is what the HTTP service would answer, worded as an MCP tool error."""
    from mcp.server.mcpserver.exceptions import ToolError

    try:
        yield
    except Refused as exc:
        raise ToolError(exc.message) from None


@contextlib.contextmanager
def _as_resource_error() -> Iterator[None]:
    from mcp.server.mcpserver.exceptions import ResourceError

    try:
        yield
    except Refused as exc:
        raise ResourceError(exc.message) from None


def create_server(indexer: Indexer) -> MCPServer:
    """An ``MCPServer`` over ``indexer``: tools ``search`` and ``ask``, resources for the index's
    status and for each indexed file (by its path relative to ``data.input_dir``)."""
    from mcp.server.mcpserver import MCPServer

    from indexer import __version__

    tools = IndexTools(indexer)

    class IndexServer(MCPServer):
        async def run_stdio_async(self) -> None:
            """The SDK's stdio transport, with lines it would drop unanswered answered first."""
            from indexer.mcp_stdio import serve_stdio

            await serve_stdio(self)

        async def list_resources(self) -> list[Resource]:
            return [*(await super().list_resources()), *(await tools.file_resources())]

    server = IndexServer(
        "indexer",
        version=__version__,
        instructions=(
            "Search and ask questions about a private, local document collection. `search` returns "
            "passages with their file, page or section and scores; `ask` answers with [n] citations "
            "of those passages (or returns the passages alone when no LLM is configured)."
        ),
        log_level="WARNING",
    )
    server.add_tool(tools.search)
    server.add_tool(tools.ask)
    server.resource(STATUS_URI, name="index-status", mime_type="application/json")(tools.status)
    server.resource(FILE_URI_TEMPLATE, name="indexed-file", mime_type="text/plain")(tools.indexed_file)
    return server


def _passage(source: Any) -> dict[str, Any]:
    data = source.to_dict()
    data["citation"] = source.citation()
    return data


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Over stdio, stdout is the protocol's wire: anything a library prints while the model loads
    (C code included, hence the file descriptor) goes to stderr instead."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run(indexer: Indexer, *, http: bool = False, port: int = 8765) -> None:
    """Load the index and the model (failing now, with a clear error, if it cannot be served), then
    serve MCP over stdio, or streamable HTTP on 127.0.0.1:``port`` (path ``/mcp``)."""
    require_mcp_extra()
    with _stdout_to_stderr():
        indexer.warm_up()
        server = create_server(indexer)
    if http:
        print(
            f"indexer: MCP over streamable HTTP on http://127.0.0.1:{port}/mcp", file=sys.stderr, flush=True
        )
        with contextlib.suppress(KeyboardInterrupt):
            server.run("streamable-http", host="127.0.0.1", port=port)
        return
    with contextlib.suppress(KeyboardInterrupt):
        server.run("stdio")
