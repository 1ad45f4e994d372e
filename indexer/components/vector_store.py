"""The Chroma client and collection, embedded on disk or on a Chroma server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from indexer.config.models import VectorStoreConfig
from indexer.errors import StoreError

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection


def describe(config: VectorStoreConfig) -> str:
    if config.host is not None:
        scheme = "https" if config.ssl else "http"
        return f"Chroma server {scheme}://{config.host}:{config.port}"
    return f"Chroma folder {config.persist_dir}"


def open_client(config: VectorStoreConfig) -> ClientAPI:
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
        if config.host is not None:
            hint = (
                " Is the server running and reachable? Start one with `chroma run --path DIR --port "
                f"{config.port}`, or fix vector_store.host / vector_store.port."
            )
        raise StoreError(f"cannot open {describe(config)}: {type(exc).__name__}: {exc}{hint}") from None


def get_collection(
    client: ClientAPI, config: VectorStoreConfig, *, create: bool, name: str | None = None
) -> Collection | None:
    """The index's collection (or ``name``); ``None`` when it does not exist and ``create`` is false."""
    name = name or config.collection
    try:
        if create:
            return client.get_or_create_collection(name=name, metadata={"hnsw:space": "cosine"})
        names = {_name(c) for c in client.list_collections()}
        if name not in names:
            return None
        return client.get_collection(name)
    except Exception as exc:
        raise StoreError(
            f"{describe(config)}: cannot open collection {name!r} "
            f"(vector_store.collection): {type(exc).__name__}: {exc}"
        ) from None


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
