"""indexer: a local, private RAG index built from one YAML config.

``from indexer import Indexer`` is the Python API; the import stays light until it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Indexer", "__version__"]

if TYPE_CHECKING:
    from indexer.api import Indexer


def __getattr__(name: str) -> Any:
    if name == "Indexer":
        from indexer.api import Indexer

        return Indexer
    raise AttributeError(f"module 'indexer' has no attribute {name!r}")
