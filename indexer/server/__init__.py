"""The HTTP service: a thin FastAPI layer over the same query core as the CLI and Python API.

Needs the ``server`` extra (``pip install 'indexer[server]'``). ``create_app`` builds the ASGI app
for an ``Indexer``; ``serve`` runs it with uvicorn, as ``indexer serve`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_app", "serve"]

if TYPE_CHECKING:
    from indexer.server.app import create_app
    from indexer.server.run import serve


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from indexer.server.app import create_app

        return create_app
    if name == "serve":
        from indexer.server.run import serve

        return serve
    raise AttributeError(f"module 'indexer.server' has no attribute {name!r}")
