"""Commands that serve the index to other programs: ``serve`` (HTTP) and ``mcp``."""

from __future__ import annotations

from typing import Annotated

import typer

from indexer.cli.options import ConfigArg, SetOpt
from indexer.cli.running import open_indexer, run


def serve(
    config: ConfigArg,
    set_: SetOpt = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default server.host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Port (default server.port, 8000).")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep the index in step with its folder while serving.")
    ] = False,
) -> None:
    """Serve the index of CONFIG over HTTP: a web page at /, /v1/query, /v1/retrieve, OpenAI-compatible
    /v1/chat/completions, /v1/embeddings, /v1/models, /v1/index, /health; the schema at /openapi.json
    (docs at /docs with server.docs: true). Needs the `server` extra (and `watch` for --watch)."""

    def work() -> None:
        from indexer.server.run import require_server_extra, serve

        require_server_extra()
        if watch:
            from indexer.cli.running import show_info
            from indexer.watch import require_watch_extra

            require_watch_extra()
            show_info("indexer.server")
        serve(open_indexer(config, set_), host=host, port=port, watch=watch)

    run(work)


def mcp(
    config: ConfigArg,
    set_: SetOpt = None,
    http: Annotated[
        bool, typer.Option("--http", help="Streamable HTTP on 127.0.0.1 instead of stdio.")
    ] = False,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port for --http.")] = 8765,
) -> None:
    """Serve the index of CONFIG to MCP clients (agents, editors): tools `search` and `ask`, resources
    for the index status and each indexed file. stdio by default. Needs the `mcp` extra."""

    def work() -> None:
        from indexer.mcp_server import require_mcp_extra
        from indexer.mcp_server import run as run_mcp

        require_mcp_extra()
        run_mcp(open_indexer(config, set_), http=http, port=port)

    run(work)
