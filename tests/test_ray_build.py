"""``build.engine: ray`` on a real Ray cluster: the same chunks and vectors as a local build, a
killed worker retried, and clear errors.

The cluster is `ray start --head` on 127.0.0.1 plus a second `ray start` node, one CPU each, rather
than ``ray.init(num_cpus=2)`` inside the test: it is the setup a user runs (a cluster that outlives
the driver, joined by ``build.ray.address``), the two embedding actors land on two nodes (so work
and results cross between raylets and object stores), a SIGKILLed driver leaves a live cluster
behind, and a CLI build joins it in a second instead of starting a cluster of its own. One
cluster serves the whole module: starting one takes about 15 s on two cores.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.config.models import Config
from indexer.errors import ClusterError, IndexerError, ModelError
from indexer.ingestion.prepare import Prepared, WorkItem
from tests.conftest import SAMPLE_DIR, run_cli, write_config
from tests.support.live_server import free_port
from tests.support.ray_cluster import RayCluster, running_ray_cluster, token_auth_env

if importlib.util.find_spec("ray") is None:
    pytest.skip("the ray extra is not installed: pip install 'indexer[ray]'", allow_module_level=True)

# Vectors of one text embedded in another batch (other padding) or with another thread count.
VECTOR_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def ray_auth() -> Iterator[dict[str, str]]:
    """The token this process joins the test cluster with. Every test that imports ray asks for
    it: ray reads these variables once, when first imported."""
    auth = token_auth_env()
    saved = {name: os.environ.get(name) for name in auth}
    os.environ.update(auth)
    try:
        yield auth
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def cluster(ray_auth: dict[str, str]) -> Iterator[RayCluster]:
    with running_ray_cluster(ray_auth, cpus_per_node=1) as running:
        yield running


def ray_config(data_dir: Path, address: str | None, **ray_settings: Any) -> Config:
    return Config.model_validate(
        {
            "data": {"input_dir": str(data_dir)},
            "vector_store": {"host": "127.0.0.1", "port": free_port(), "collection": "ray"},
            "build": {"engine": "ray", "ray": {"address": address, **ray_settings}},
        }
    )


def work_items(folder: Path) -> list[WorkItem]:
    items = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        doc_id = path.relative_to(folder).as_posix()
        items.append(WorkItem(doc_id, str(path), hashlib.sha256(data).hexdigest(), len(data)))
    return items


def prepare_locally(config: Config, items: list[WorkItem]) -> dict[str, Prepared]:
    """What a local build makes of ``items``: the same functions, in this process."""
    from indexer.components import Components
    from indexer.components.embedding import encode_passages
    from indexer.ingestion.chunking import make_splitter
    from indexer.ingestion.prepare import read_and_chunk

    components = Components(config)
    splitter = make_splitter(config.chunking, components.token_spans)
    out = {}
    for item in items:
        prepared = read_and_chunk(item, splitter)
        prepared.vectors = encode_passages(components.embed_model, [c.text for c in prepared.chunks])
        out[item.doc_id] = prepared
    return out


def assert_same(got: list[Prepared], want: dict[str, Prepared]) -> None:
    assert sorted(p.item.doc_id for p in got) == sorted(want)  # each file exactly once
    for prepared in got:
        expected = want[prepared.item.doc_id]
        assert prepared.error is None
        assert [c.id for c in prepared.chunks] == [c.id for c in expected.chunks]
        assert [c.text for c in prepared.chunks] == [c.text for c in expected.chunks]
        assert [c.metadata for c in prepared.chunks] == [c.metadata for c in expected.chunks]
        assert prepared.vectors.dtype == np.float32
        assert prepared.vectors.shape == (len(expected.chunks), 384)
        np.testing.assert_allclose(prepared.vectors, expected.vectors, atol=VECTOR_TOLERANCE)


def test_ray_prepares_what_a_local_build_does(cluster: RayCluster) -> None:
    import ray

    from indexer.ingestion.ray_engine import RayEngine

    config = ray_config(SAMPLE_DIR, cluster.address, actors=2, batch_size=3)
    items = work_items(SAMPLE_DIR)
    with RayEngine(config) as engine:
        got = list(engine.prepare(items))
        workers = engine.workers()
    assert len({w.node_id for w in workers}) == 2  # one actor on each node
    assert_same(got, prepare_locally(config, items))
    assert sum(len(p.chunks) for p in got) == 33
    assert not ray.is_initialized()  # the engine disconnects when it joined


def _holders(path: Path) -> set[int]:
    """Processes, other than this one, with ``path`` open."""
    target = str(path)
    found = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        pid = int(fd_dir.parent.name)
        if pid == os.getpid():
            continue
        try:
            if any(os.readlink(fd) == target for fd in fd_dir.iterdir()):
                found.add(pid)
        except OSError:  # gone, or not ours to look at
            continue
    return found


def _wait_for_holder(path: Path, exclude: set[int], timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holders = _holders(path) - exclude
        if holders:
            return holders.pop()
        time.sleep(0.05)
    raise TimeoutError(f"no process opened {path}")


class KillTheReaderOnce(threading.Thread):
    """The fault: a file that is a FIFO, so the worker reading it is stuck mid-batch until this
    thread writes. The first worker found reading is SIGKILLed; the one Ray retries the batch on
    is fed the text."""

    def __init__(self, fifo: Path, text: str) -> None:
        super().__init__(daemon=True)
        self.fifo, self.text = fifo, text
        self.killed: int | None = None
        self.killed_title = ""
        self.fed: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        writer = None
        try:
            # A non-blocking open for writing succeeds once a reader waits in open(); holding the
            # writer end keeps every later reader blocked in read(), where /proc shows who it is.
            deadline = time.monotonic() + 300
            while writer is None:
                try:
                    writer = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as exc:
                    if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            os.set_blocking(writer, True)
            self.killed = _wait_for_holder(self.fifo, exclude=set())
            self.killed_title = Path(f"/proc/{self.killed}/cmdline").read_bytes().decode(errors="replace")
            os.kill(self.killed, signal.SIGKILL)
            self.fed = _wait_for_holder(self.fifo, exclude={self.killed})
        except BaseException as exc:
            self.error = exc
        finally:
            if writer is not None:
                os.write(writer, self.text.encode())
                os.close(writer)


def test_a_worker_killed_mid_batch_is_retried_with_the_same_result(
    cluster: RayCluster, tmp_path: Path
) -> None:
    from indexer.ingestion.ray_engine import RayEngine

    text = (SAMPLE_DIR / "guides" / "maintenance.txt").read_text()
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("hardware.md", "glossary.txt", "faq.html", "troubleshooting.md"):
        (docs / name).write_bytes((SAMPLE_DIR / name).read_bytes())
    fifo = docs / "slow.txt"
    os.mkfifo(fifo)
    items = work_items(docs)  # not the FIFO: it is no regular file
    slow = WorkItem("slow.txt", str(fifo), hashlib.sha256(text.encode()).hexdigest(), len(text))
    items.insert(2, slow)

    # The reference reads the same text from a plain file under the same id and hash.
    plain = tmp_path / "plain.txt"
    plain.write_text(text)
    config = ray_config(docs, cluster.address, actors=2, batch_size=2)
    as_plain = WorkItem(slow.doc_id, str(plain), slow.hash, slow.size)
    want = prepare_locally(config, [*items[:2], as_plain, *items[3:]])

    fault = KillTheReaderOnce(fifo, text)
    fault.start()
    with RayEngine(config) as engine:
        got = list(engine.prepare(items))
        pids = {w.pid for w in engine.workers()}
    fault.join(timeout=60)
    assert fault.error is None, fault.error
    assert "EmbeddingWorker.prepare" in fault.killed_title  # an actor, killed inside a batch
    # The batch ran again on the actor Ray restarted in a new process.
    assert fault.killed not in pids and fault.fed in pids
    assert_same(got, want)


def test_a_worker_that_cannot_load_the_model_is_a_clear_error(cluster: RayCluster, tmp_path: Path) -> None:
    from indexer.ingestion.ray_engine import RayEngine

    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    config = ray_config(SAMPLE_DIR, cluster.address, actors=1)
    config.embedding.model = str(not_a_model)
    with RayEngine(config) as engine, pytest.raises(ModelError) as caught:
        list(engine.prepare(work_items(SAMPLE_DIR)))
    message = str(caught.value)
    assert "build.ray.address" in message and cluster.address in message
    assert "cannot load the embedding model" in message and "not-a-model" in message
    assert caught.value.exit_code == 2 and "\n" not in message


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_unreachable_cluster_is_a_clear_error(scheme: str, ray_auth: dict[str, str]) -> None:
    import ray

    from indexer.ingestion.ray_engine import RayEngine

    address = f"{scheme}127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ClusterError) as caught:
        RayEngine(ray_config(SAMPLE_DIR, address))
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert f"build.ray.address ({address})" in message and "ray start --head" in message
    assert caught.value.exit_code == 2 and not ray.is_initialized()


def test_an_embedded_store_is_refused_for_a_ray_build(tmp_path: Path) -> None:
    config = write_config(tmp_path, SAMPLE_DIR, build={"engine": "ray"})  # persist_dir: storage
    result = run_cli("build", str(config), timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "build.engine ray needs a Chroma server" in message
    assert "vector_store.host" in message and "build.ray" in message
    assert not (tmp_path / "storage").exists()


def test_without_the_ray_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer.ingestion.ray_engine import RayEngine

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with pytest.raises(IndexerError) as caught:
        RayEngine(ray_config(SAMPLE_DIR, None))
    assert "pip install 'indexer[ray]'" in str(caught.value) and caught.value.exit_code == 2
