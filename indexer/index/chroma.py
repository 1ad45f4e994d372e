"""Everything indexer knows about Chroma, in one place: the client (embedded on disk or on a Chroma
server) and its collections, the files of an embedded database (and setting a damaged one aside),
the side collections that hold one record (the manifest and the writer lease on a server), and the
``where`` dialect that filters are written in. No other module imports chromadb.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from indexer.config.models import VectorStoreConfig
from indexer.errors import StoreError
from indexer.index.write_errors import is_disk_full, is_read_only, read_only_error, write_error

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.collection_configuration import CreateCollectionConfiguration
    from chromadb.api.models.Collection import Collection

# The file an embedded Chroma (1.x) keeps its records in, inside persist_dir.
DATABASE_FILE = "chroma.sqlite3"

# Chroma requires a vector on every record; the one-record side collections (manifest, lease) carry
# this one.
SIDE_RECORD_VECTOR: list[float] = [0.0]

Where = dict[str, Any]
"""A Chroma ``where`` clause."""


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
        if config.host is None:
            # chromadb caches the failed system and hands it out again, where it fails with
            # "'RustBindingsAPI' object has no attribute 'bindings'": forget it, so that the
            # next try (a snapshot, or a later open) starts afresh and this error stays the one told.
            _forget_system(Path(str(config.persist_dir)))
            if cannot_write(exc):
                raise UnwritableStore(config, exc) from None
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


class UnwritableStore(StoreError):
    """An embedded Chroma folder that cannot be opened because it cannot be written: a read-only
    folder or disk, or a full disk (Chroma writes to its database even to open it)."""

    def __init__(self, config: VectorStoreConfig, cause: BaseException) -> None:
        self.cause = cause
        self.disk_full = is_disk_full(cause)
        what, folder = "open the Chroma database for writing", str(config.persist_dir)
        if self.disk_full or is_read_only(cause):
            error = write_error(cause, what, folder)
        else:  # chromadb's own words for it: "attempt to write a readonly database"
            error = read_only_error(what, folder, f"{type(cause).__name__}: {cause}")
        super().__init__(str(error))


def cannot_write(exc: BaseException) -> bool:
    """``exc`` says the disk is full, or that a file or folder is read-only."""
    if is_disk_full(exc) or is_read_only(exc):
        return True
    text = str(exc).lower()
    return "readonly database" in text or "read-only file system" in text


def _forget_system(persist_dir: Path) -> None:
    # Private API; chromadb offers no public way to drop a cached system.
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient._identifier_to_system.pop(str(persist_dir), None)
    SharedSystemClient._identifier_to_refcount.pop(str(persist_dir), None)


def open_snapshot(config: VectorStoreConfig) -> tuple[ClientAPI, Path]:
    """A client on a temporary copy of the Chroma files of ``config.persist_dir``, for reading an
    index whose folder cannot be written. Chroma 1.x has no read-only mode: it writes to its SQLite
    database and to its vector segments even to open them and to search, so a read-only folder, or a
    full disk, would otherwise stop the committed index from answering. The copy is taken whole and
    is never written back; the caller removes it (``remove_snapshot``)."""
    import shutil
    import tempfile

    folder = Path(str(config.persist_dir))
    snapshot = Path(tempfile.mkdtemp(prefix="indexer-readonly-"))
    try:
        for path in folder.iterdir():
            if _CHROMA_FILE_RE.match(path.name) or path.name.startswith("keyword-"):
                if path.is_dir():
                    shutil.copytree(path, snapshot / path.name)
                else:
                    shutil.copy2(path, snapshot / path.name)
    except OSError as exc:
        remove_snapshot(snapshot)
        raise StoreError(
            f"cannot read the index in {folder}: Chroma cannot open it there (the folder cannot be "
            f"written), and copying it to {snapshot} to read it failed: {exc.strerror or exc}. Free "
            "some space in the temporary folder (TMPDIR), or make the index folder writable."
        ) from None
    copy = config.model_copy(update={"persist_dir": snapshot})
    try:
        return open_client(copy), snapshot
    except StoreError:
        remove_snapshot(snapshot)
        raise


def remove_snapshot(snapshot: Path) -> None:
    import shutil

    _forget_system(snapshot)
    shutil.rmtree(snapshot, ignore_errors=True)


# Chroma's own files in a persist folder: its SQLite database and one folder per vector segment.
_CHROMA_FILE_RE = re.compile(
    rf"^{re.escape(DATABASE_FILE)}(-wal|-shm|-journal)?$"
    r"|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
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
    # it so the next client opens the new, empty database.
    _forget_system(persist_dir)
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


def side_collection(client: ClientAPI, name: str) -> Collection:
    """A side collection of one record (the manifest, the writer lease on a server), made on first use."""
    return client.get_or_create_collection(name)


# -- the where dialect ---------------------------------------------------------------------------


def where_in(key: str, values: Iterable[Any]) -> Where:
    """``key`` is one of ``values``. Chroma refuses an empty ``$in``: callers check for none first."""
    return {key: {"$in": list(values)}}


def where_any(key: str, values: Sequence[Any]) -> Where:
    """``key`` equals one of ``values``, compared with their types (Chroma compares types strictly:
    a filter value may be stored as a string or as a number, so each form is its own clause)."""
    alternatives: list[Where] = [{key: v} for v in values]
    return alternatives[0] if len(alternatives) == 1 else {"$or": alternatives}


def where_all(clauses: Sequence[Where]) -> Where | None:
    """Every clause holds (``None``: no clause, no filter)."""
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": list(clauses)}


def where_equal(key: str, value: Any) -> Where:
    return {key: value}


def where_not_equal(key: str, value: Any) -> Where:
    return {key: {"$ne": value}}
