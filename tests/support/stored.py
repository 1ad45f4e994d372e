"""What a built index stores, read the way the index itself reads it (``ChunkStore.chunks_of``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from indexer.api import Indexer
    from indexer.index.store import Hit


def stored_chunks(ix: Indexer) -> list[Hit]:
    """Every stored chunk of every document the manifest holds, whatever its version: committed or
    not, so a test also sees a version that should have been removed."""
    manifest = ix.index.manifest_file.load()
    store = ix.index.chunk_store(create=False)
    assert manifest is not None and store is not None
    return list(store.chunks_of(sorted(manifest.files)))
