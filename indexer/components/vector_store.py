"""The Chroma client and collection, embedded on disk or on a Chroma server."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.config.models import VectorStoreConfig
from indexer.errors import StoreError
from indexer.index.write_errors import is_disk_full, write_error

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.collection_configuration import CreateCollectionConfiguration
    from chromadb.api.models.Collection import Collection


def describe(config: VectorStoreConfig, *, reveal_paths: bool = True) -> str:
    if config.host is not None:
        scheme = "https" if config.ssl else "http"
        return f"Chroma server {scheme}://{config.host}:{config.port}"
    folder = config.persist_dir if reveal_paths or config.persist_dir is None else config.persist_dir.name
    return f"Chroma folder {folder}"


def location(config: VectorStoreConfig) -> str:
    """Where the index lives, as messages and ``indexer status`` name it: its folder, or
    ``chroma://HOST:PORT/COLLECTION`` on a Chroma server (the configured collection, whose
    generations ``NAME-gN`` live beside it)."""
    if config.host is not None:
        return f"chroma://{config.host}:{config.port}/{config.collection}"
    return str(config.persist_dir)


@contextlib.contextmanager
def _unchecked_overrides() -> Iterator[None]:
    """While chromadb loads: its ``@override`` decorators mark methods without checking each
    signature against the base class's. The check (``typing.get_type_hints`` on ~160 methods)
    is a development aid of chromadb's, whose own tests run it; it was a third of chromadb's
    import time, 0.25 of 0.7 s of CPU, in every cold CLI call (benchmarks/cold_start.py)."""
    if "chromadb" in sys.modules:
        yield
        return
    import overrides

    def unchecked(method: Any = None, **_: Any) -> Any:
        if method is None:
            return unchecked
        method.__override__ = True  # what EnforceOverrides looks for
        return method

    saved = overrides.override, overrides.overrides
    overrides.override = overrides.overrides = unchecked
    try:
        yield
    finally:
        overrides.override, overrides.overrides = saved


def open_client(config: VectorStoreConfig) -> ClientAPI:
    with _unchecked_overrides():
        import chromadb
        from chromadb.config import Settings

    # Telemetry off: no document, question or usage event may leave the machine.
    settings = Settings(anonymized_telemetry=False)
    try:
        if config.host is None:
            return chromadb.PersistentClient(path=str(config.persist_dir), settings=settings)
        headers = {"Authorization": f"Bearer {config.auth_token}"} if config.auth_token else None
        client = chromadb.HttpClient(
            host=config.host, port=config.port, ssl=config.ssl, headers=headers, settings=settings
        )
        _bound_http_timeout(client, config.timeout)
        return client
    except Exception as exc:  # connection refused, bad folder permissions, version mismatch
        hint = ""
        if config.host is None:
            hint = (
                " If the database is damaged, `indexer build CONFIG --rebuild` sets its files aside "
                "and builds the index again."
            )
        if config.host is not None:
            hint = (
                " Is the server running and reachable? Start one with `chroma run --path DIR --port "
                f"{config.port}`, or fix vector_store.host / vector_store.port."
            )
        raise StoreError(f"cannot open {describe(config)}: {type(exc).__name__}: {exc}{hint}") from None


# Chroma's own files in a persist folder: its SQLite database and one folder per vector segment.
_CHROMA_FILE_RE = re.compile(
    r"^chroma\.sqlite3(-wal|-shm|-journal)?$|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)


def set_aside_database(persist_dir: Path) -> Path | None:
    """Move Chroma's files out of ``persist_dir`` into a ``damaged-chroma-TIME`` folder beside
    indexer's own files, so a rebuild can start from an empty database and nothing is deleted.
    ``None`` when there was nothing of Chroma's to move."""
    found = (
        [p for p in persist_dir.iterdir() if _CHROMA_FILE_RE.match(p.name)] if persist_dir.is_dir() else []
    )
    if not found:
        return None
    target = persist_dir / f"damaged-chroma-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    target.mkdir()
    for path in found:
        path.rename(target / path.name)
    # chromadb caches one system per folder, a failed one too, and would hand it out again: drop
    # it so the next client opens the new, empty database. (Private API; no public way exists.)
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient._identifier_to_system.pop(str(persist_dir), None)
    SharedSystemClient._identifier_to_refcount.pop(str(persist_dir), None)
    return target


def get_collection(
    client: ClientAPI, config: VectorStoreConfig, *, create: bool, name: str | None = None
) -> Collection | None:
    """The index's collection (or ``name``); ``None`` when it does not exist and ``create`` is false."""
    name = name or config.collection
    try:
        names = {_name(c) for c in client.list_collections()}
        if name in names:
            collection = client.get_collection(name)
            if create:  # a build: bring the search setting in line (construction is fixed)
                _apply_search_ef(collection, config)
            return collection
        if not create:
            return None
        return client.create_collection(name=name, configuration=_hnsw_configuration(config))
    except Exception as exc:
        if is_disk_full(exc):
            raise write_error(exc, f"create collection {name!r}", describe(config)) from None
        raise StoreError(
            f"{describe(config)}: cannot open collection {name!r} "
            f"(vector_store.collection): {type(exc).__name__}: {exc}"
        ) from None


def _hnsw_configuration(config: VectorStoreConfig) -> CreateCollectionConfiguration:
    # chromadb 1.x takes index settings as a configuration; the legacy "hnsw:*" metadata still
    # works but cannot be changed later. Cosine space: scores are 1 - distance (index/store.py).
    hnsw = config.hnsw
    return {
        "hnsw": {
            "space": "cosine",
            "ef_search": hnsw.search_ef,
            "ef_construction": hnsw.construction_ef,
            "max_neighbors": hnsw.m,
        }
    }


def hnsw_settings(collection: Any) -> dict[str, Any]:
    """The HNSW settings a collection actually has (recorded in the manifest)."""
    stored = (getattr(collection, "configuration_json", None) or {}).get("hnsw") or {}
    return {
        "search_ef": stored.get("ef_search"),
        "construction_ef": stored.get("ef_construction"),
        "m": stored.get("max_neighbors"),
    }


def _apply_search_ef(collection: Any, config: VectorStoreConfig) -> None:
    """search_ef can change on an existing collection; construction_ef and m only by a rebuild."""
    current = hnsw_settings(collection)
    wanted = config.hnsw
    if current["search_ef"] is not None and current["search_ef"] != wanted.search_ef:
        collection.modify(configuration={"hnsw": {"ef_search": wanted.search_ef}})
    fixed = {"construction_ef": wanted.construction_ef, "m": wanted.m}
    differ = {k: v for k, v in fixed.items() if current[k] is not None and current[k] != v}
    if differ:
        log.info(
            "collection %r keeps its HNSW %s (set when it was created); `indexer build --rebuild` "
            "applies vector_store.hnsw %s",
            collection.name,
            ", ".join(f"{k} {current[k]}" for k in differ),
            ", ".join(f"{k} {v}" for k, v in differ.items()),
        )


def collection_names(client: ClientAPI) -> set[str]:
    return {_name(c) for c in client.list_collections()}


def _name(collection: Any) -> str:
    # chromadb returns names (str) or Collection objects depending on the version.
    return collection if isinstance(collection, str) else collection.name


def _bound_http_timeout(client: Any, seconds: float) -> None:
    """chromadb's HTTP client waits forever (httpx ``timeout=None``) and offers no setting for it:
    a stalled server would hang a build or a query. Bound every request instead."""
    session = getattr(getattr(client, "_server", None), "_session", None)
    if session is not None:
        import httpx

        session.timeout = httpx.Timeout(seconds, connect=min(seconds, 10.0))
