"""One writer at a time on an index on a Chroma server: the lease lock, on a real `chroma run`."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from indexer import Indexer
from indexer.errors import StoreError
from indexer.index.lock import LEASE_RECORD_ID, IndexBusyError, writer_lock
from tests.conftest import SAMPLE_DIR, run_cli, write_config
from tests.support.chroma_server import running_chroma


def _server_config(folder: Path, port: int, collection: str) -> Path:
    config = write_config(folder, SAMPLE_DIR)
    data = yaml.safe_load(config.read_text())
    data["vector_store"] = {"host": "127.0.0.1", "port": port, "collection": collection}
    config.write_text(yaml.safe_dump(data))
    return config


def _client(port: int) -> Any:
    from indexer.config.models import VectorStoreConfig
    from indexer.index.chroma import open_client

    return open_client(VectorStoreConfig(host="127.0.0.1", port=port, collection="unused"))


def _lease(client: Any, collection: str) -> dict[str, Any] | None:
    """The lock record of ``collection`` as it is on the server, or ``None``."""
    got = client.get_or_create_collection(f"{collection}-lock").get(ids=[LEASE_RECORD_ID])
    return got["metadatas"][0] if got["ids"] else None


def _leave_dead_holder(client: Any, collection: str, token: str = "dead-holder") -> None:
    """The record a holder killed mid-build leaves: nobody renews it, so its expiry is past."""
    client.get_or_create_collection(f"{collection}-lock").add(
        ids=[LEASE_RECORD_ID],
        embeddings=[[0.0]],
        metadatas=[
            {
                "token": token,
                "pid": 4242,
                "host": "gone-host",
                "started": "2026-01-01T00:00:00+00:00",
                "expires": time.time() - 5,
            }
        ],
    )


def test_a_second_build_fails_at_once_naming_the_holder(chroma_port: int, tmp_path: Path) -> None:
    config = _server_config(tmp_path, chroma_port, "busy")
    client = _client(chroma_port)
    with writer_lock(None, client=client, collection="busy"):
        ours = _lease(client, "busy")
        started = time.monotonic()
        result = run_cli("build", str(config))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "another build is writing to the index in Chroma server collection 'busy'" in result.stderr
        assert f"pid {os.getpid()} on {socket.gethostname()}, started {ours['started']}" in result.stderr
        assert "only one build may write at a time" in result.stderr
        assert time.monotonic() - started < 60  # refused before any model is loaded
        assert _lease(client, "busy") == ours  # the refused build left our lease alone ...
        assert Indexer.from_config(config).index.manifest_file.load() is None  # ... and wrote nothing
    assert _lease(client, "busy") is None


@pytest.mark.slow
def test_an_expired_lease_of_a_dead_holder_does_not_block(chroma_port: int, tmp_path: Path) -> None:
    config = _server_config(tmp_path, chroma_port, "orphaned")
    client = _client(chroma_port)
    _leave_dead_holder(client, "orphaned")
    result = run_cli("build", str(config), "--json")
    assert result.returncode == 0, result.stderr
    assert "taking over the expired writer lease of pid 4242 on gone-host" in result.stderr
    assert '"added": 10' in result.stdout
    assert _lease(client, "orphaned") is None  # released after the build


def test_the_lock_is_released_after_a_failed_build(chroma_port: int, tmp_path: Path) -> None:
    config = _server_config(tmp_path, chroma_port, "foreign")
    client = _client(chroma_port)
    # A collection indexer did not build: the build refuses it once it holds the lock.
    client.get_or_create_collection("foreign").add(ids=["theirs"], embeddings=[[0.1] * 384])
    with pytest.raises(StoreError, match="no indexer manifest"):
        Indexer.from_config(config).build()
    assert _lease(client, "foreign") is None
    with pytest.raises(KeyboardInterrupt), writer_lock(None, client=client, collection="foreign"):
        assert _lease(client, "foreign") is not None
        raise KeyboardInterrupt
    assert _lease(client, "foreign") is None


@pytest.mark.slow
def test_the_lease_is_renewed_while_it_is_held(chroma_port: int) -> None:
    client = _client(chroma_port)
    with writer_lock(None, client=client, collection="renewed", ttl=3.0):
        first = _lease(client, "renewed")
        time.sleep(4.5)  # past the first expiry: only renewals keep the lease alive
        renewed = _lease(client, "renewed")
        assert renewed is not None and renewed["token"] == first["token"]
        assert renewed["expires"] > time.time()
        with (
            pytest.raises(IndexBusyError, match=r"another build .* only one build may write"),
            writer_lock(None, client=client, collection="renewed"),
        ):
            pass
    assert _lease(client, "renewed") is None


def test_a_rival_that_saw_the_same_stale_lease_cannot_remove_the_new_one(chroma_port: int) -> None:
    client = _client(chroma_port)
    _leave_dead_holder(client, "contended", token="stale")
    with writer_lock(None, client=client, collection="contended"):
        ours = _lease(client, "contended")
        assert ours is not None and ours["pid"] == os.getpid()
        # What a second build that also found the stale record does next: its add is ignored and
        # its delete names the stale token, so our fresh record survives both.
        side = client.get_collection("contended-lock")
        side.add(ids=[LEASE_RECORD_ID], embeddings=[[0.0]], metadatas=[{"token": "rival", "expires": 0}])
        side.delete(ids=[LEASE_RECORD_ID], where={"token": "stale"})
        assert _lease(client, "contended") == ours


def test_a_server_that_dies_before_the_lock_is_a_clear_error(tmp_path: Path) -> None:
    with running_chroma(tmp_path / "short-lived") as port:
        client = _client(port)
    with (
        pytest.raises(StoreError, match=r"cannot take the writer lock \(gone-lock\) on the Chroma server"),
        writer_lock(None, client=client, collection="gone"),
    ):
        pass


def test_an_index_holds_its_lease_for_vector_store_lease_ttl(chroma_port: int) -> None:
    from indexer.config.models import VectorStoreConfig
    from indexer.index.index import Index

    config = VectorStoreConfig(host="127.0.0.1", port=chroma_port, collection="short-lease", lease_ttl=7)
    client = _client(chroma_port)
    with Index(config).writer():
        lease = _lease(client, "short-lease")
        assert lease is not None and 5 < lease["expires"] - time.time() <= 7
    assert _lease(client, "short-lease") is None


def test_a_lease_shorter_than_five_seconds_is_refused() -> None:
    from pydantic import ValidationError

    from indexer.config.models import VectorStoreConfig

    with pytest.raises(ValidationError, match="lease_ttl"):
        VectorStoreConfig(host="127.0.0.1", collection="indexer", lease_ttl=1)
