"""One writer per index: an exclusive lock held for the whole of a build.

On an embedded index the lock is an OS file lock (``filelock``: ``flock`` on POSIX) on a file in
the persist folder. The kernel releases it when the holder exits in any way, SIGKILL and crashes
included, so a lock of a dead process never blocks the next build. Who holds it (pid, host, start)
is written to a second file, because ``filelock`` truncates the lock file when it tries to take it.

On a Chroma server the lock is a lease: one record (id ``writer``) in the side collection
``{collection}-lock``, naming its holder and when the lease expires. Chroma has no transactions,
but two of its operations are enough: ``add`` of an id that exists is ignored (insert-if-absent),
and ``delete(ids=..., where={"token": T})`` deletes only the record of token ``T`` (a conditional
delete). A build adds its record and reads it back: if the token is its own, it holds the lock. A
record whose lease expired (its holder died: SIGKILL, power loss, lost network) is deleted by *its*
token and the add tried once more; a rival that saw the same stale record cannot delete the fresh
one, since its delete names the stale token. While the build runs, a daemon thread renews the lease
every third of its lifetime; on exit, exceptions and Ctrl-C included, the record is deleted by our
token. The expiry is compared with the clock of the machine that checks it, so the lifetime
(``vector_store.lease_ttl``, 60 s by default) is long against any clock skew between machines
sharing a server.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indexer.errors import StoreError
from indexer.index import chroma
from indexer.index.write_errors import write_error

log = logging.getLogger(__name__)

LOCK_FILE = "indexer-build.lock"
OWNER_FILE = "indexer-build.owner.json"

# Seconds a server lease lives without renewal: how long a build that died blocks the next one
# (``vector_store.lease_ttl`` sets it per index).
LEASE_TTL = 60.0
LEASE_RECORD_ID = "writer"
LEASE_COLLECTION_SUFFIX = "-lock"


class IndexBusyError(StoreError):
    """Another build is writing to the same index."""


@contextmanager
def writer_lock(
    folder: Path | None,
    *,
    client: Any = None,
    collection: str | None = None,
    ttl: float = LEASE_TTL,
) -> Iterator[None]:
    """Hold the index's writer lock, or fail at once naming the build that holds it.

    ``folder`` is the persist folder of an embedded index (a file lock). Without one, ``client``
    (a Chroma client) and ``collection`` (the index's collection) name an index on a Chroma
    server (a lease of ``ttl`` seconds, renewed while the block runs).
    """
    if folder is not None:
        with _file_lock(folder):
            yield
        return
    if client is None or collection is None:
        raise ValueError("writer_lock needs a persist folder, or a Chroma client and a collection")
    lease = ServerLease(client, collection, ttl=ttl)
    lease.acquire()
    try:
        yield
    finally:
        lease.release()


@contextmanager
def _file_lock(folder: Path) -> Iterator[None]:
    from filelock import FileLock, Timeout

    try:
        # Created here, not by filelock: filelock reads a lock file it cannot open as "held by
        # another", which would blame a read-only folder on a build that does not exist.
        folder.mkdir(parents=True, exist_ok=True)
        (folder / LOCK_FILE).touch(exist_ok=True)
    except OSError as exc:
        raise write_error(exc, "take the writer lock", folder) from None
    lock = FileLock(folder / LOCK_FILE, timeout=0, thread_local=False, is_singleton=False)
    try:
        lock.acquire()
    except Timeout:
        raise IndexBusyError(
            f"another build is writing to the index in {folder} ({_describe_owner(folder)}): only one "
            "build may write at a time. Wait for it to finish, or stop it; a build that died releases "
            "the lock by itself."
        ) from None
    except OSError as exc:  # after Timeout, which is an OSError too
        # An existing lock file this user may not write (its mode, or a read-only disk): touch()
        # above only set its times, and filelock raises PermissionError.
        raise write_error(exc, "take the writer lock", folder) from None
    owner = folder / OWNER_FILE
    try:
        try:
            owner.write_text(json.dumps(_owner()))
        except OSError as exc:
            raise write_error(exc, "record the writer lock's owner", folder) from None
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def _owner() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _describe_owner(folder: Path) -> str:
    try:
        info = json.loads((folder / OWNER_FILE).read_text())
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError):
        return "owner unknown"


class ServerLease:
    """The writer lease on an index on a Chroma server (see the module docstring)."""

    def __init__(self, client: Any, collection: str, *, ttl: float = LEASE_TTL) -> None:
        self.collection = collection
        self.side_name = f"{collection}{LEASE_COLLECTION_SUFFIX}"
        self.ttl = ttl
        self.token = uuid.uuid4().hex
        self._client = client
        self._side: Any = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lease, or raise ``IndexBusyError`` naming its live holder."""
        try:
            self._take()
        except BaseException:
            # Interrupted (Ctrl-C) or refused after our add may have landed: leave no record behind.
            self._delete_ours(warn=False)
            raise
        self._heartbeat = threading.Thread(
            target=self._renew_until_stopped, name=f"indexer lease {self.side_name}", daemon=True
        )
        self._heartbeat.start()

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            # A renewal still in flight after this is harmless: an update of a deleted id is a no-op.
            self._heartbeat.join(timeout=5)
        self._delete_ours()

    # -- the protocol ----------------------------------------------------------------------------

    def _take(self) -> None:
        record = self._owner_record()
        holder: dict[str, Any] | None = None
        for _ in range(2):  # a second add only after removing a stale lease (or a holder leaving)
            with self._server_errors("take the writer lock"):
                self._collection().add(**record)
                holder = self._holder()
            if holder is None:
                continue  # its holder released it between our add and our read
            if holder.get("token") == self.token:
                return
            if not _expired(holder):
                break
            stale = holder.get("token")
            if not isinstance(stale, str):
                raise StoreError(
                    f"the writer lock record of Chroma server collection {self.collection!r} is damaged "
                    f"(no token). Delete the collection {self.side_name!r} on the server, then build again."
                )
            log.warning("taking over the expired writer lease of %s", _describe_holder(holder))
            with self._server_errors("remove the expired writer lease"):
                self._collection().delete(ids=[LEASE_RECORD_ID], where=chroma.where_equal("token", stale))
        raise IndexBusyError(
            f"another build is writing to the index in Chroma server collection {self.collection!r} "
            f"({_describe_holder(holder)}): only one build may write at a time. Wait for it to finish, "
            f"or stop it; the lease of a build that died expires {self.ttl:g} s after its last renewal."
        )

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                holder = self._holder()
                if holder is None or holder.get("token") != self.token:
                    log.warning(
                        "lost the writer lease on Chroma server collection %r (it expired before a "
                        "renewal reached the server): another build may be writing to the index too",
                        self.collection,
                    )
                    return
                # Only ``expires``: Chroma merges metadata, so even if a rival took the lease
                # between our read and this update, its token (its ownership) stays intact.
                self._collection().update(
                    ids=[LEASE_RECORD_ID], metadatas=[{"expires": time.time() + self.ttl}]
                )
            except Exception as exc:  # the server went away: keep trying until the lease expires
                log.warning(
                    "cannot renew the writer lease (%s): %s: %s", self.side_name, type(exc).__name__, exc
                )

    def _delete_ours(self, *, warn: bool = True) -> None:
        try:
            self._collection().delete(ids=[LEASE_RECORD_ID], where=chroma.where_equal("token", self.token))
        except Exception as exc:
            # Never hide the build's own outcome (or its exception) behind this one.
            if warn:
                log.warning(
                    "cannot release the writer lease (%s): %s: %s; it expires by itself in %g s",
                    self.side_name,
                    type(exc).__name__,
                    exc,
                    self.ttl,
                )

    # -- Chroma ----------------------------------------------------------------------------------

    def _owner_record(self) -> dict[str, Any]:
        metadata = {**_owner(), "token": self.token, "expires": time.time() + self.ttl}
        return {"ids": [LEASE_RECORD_ID], "metadatas": [metadata], "embeddings": [chroma.SIDE_RECORD_VECTOR]}

    def _holder(self) -> dict[str, Any] | None:
        got = self._collection().get(ids=[LEASE_RECORD_ID], include=["metadatas"])
        return dict(got["metadatas"][0] or {}) if got["ids"] else None

    def _collection(self) -> Any:
        if self._side is None:
            self._side = chroma.side_collection(self._client, self.side_name)
        return self._side

    @contextmanager
    def _server_errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:  # the server went away or refused us
            raise StoreError(
                f"cannot {what} ({self.side_name}) on the Chroma server: {type(exc).__name__}: {exc}"
            ) from None


def _expired(holder: dict[str, Any]) -> bool:
    expires = holder.get("expires")
    return isinstance(expires, int | float) and expires < time.time()


def _describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder or not {"pid", "host", "started"} <= holder.keys():
        return "owner unknown"
    text = f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
    expires = holder.get("expires")
    if isinstance(expires, int | float):
        text += f", lease expires in {max(0, round(expires - time.time()))} s unless renewed"
    return text
