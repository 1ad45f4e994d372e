"""``build.engine: ray`` on a real Ray cluster and a real `chroma run` server: the same index as a
local build, a killed worker retried, a SIGKILLed driver recovered by the next build, no Ray at all
for an unchanged re-run, and clear errors.

The cluster is `ray start --head` on 127.0.0.1 plus a second `ray start` node, one CPU each, rather
than ``ray.init(num_cpus=2)`` inside the test: it is the setup a user runs (a cluster that outlives
the driver, joined by ``build.ray.address``); the two embedding actors land on two nodes, so work
and results cross between raylets and object stores; a SIGKILLed driver leaves a live cluster that
must clean up after it; and each CLI build joins in a second instead of starting a cluster of its
own. One cluster serves the whole module (it takes seconds to start), and the session's Chroma
server every test, each in collections of its own.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from indexer.config.models import Config
from indexer.ingestion.prepare import Prepared, WorkItem
from tests.conftest import ROOT, SAMPLE_DIR, run_cli, write_config
from tests.support.corpus import work_items, write_corpus
from tests.support.images import encoded, render
from tests.support.live_server import free_port
from tests.support.ray_cluster import RayCluster, running_ray_cluster, token_auth_env

pytestmark = pytest.mark.cluster  # a two-node Ray cluster and a `chroma run` server

if importlib.util.find_spec("ray") is None:
    pytest.skip("the ray extra is not installed: pip install 'indexer[ray]'", allow_module_level=True)

# Vectors of one text embedded in another batch (other padding) or with another thread count, in
# float32. The tests pin float32: embedding.dtype auto is bfloat16 on an AMX CPU, whose vectors
# move by ~1e-3 with the batch they are in, whichever engine embeds them.
VECTOR_TOLERANCE = 1e-5
FLOAT32 = {"batch_size": 2, "dtype": "float32"}
# Small chunks and embedding batches: a build commits every 64 chunks (32 batches of 2), so a
# SIGKILL lands between two commits, and each Ray task carries two files.
SMALL = {"chunking": {"chunk_size": 64, "chunk_overlap": 8}, "embedding": FLOAT32}
CORPUS_FILES = 30
SCAN_TEXT = ["Receipt 4471: two brass hinges, paid in cash on the third of May."]

# The missing package is a named fault: in a fresh process, ``import ray`` then fails exactly as
# it does where the ray extra is not installed (as in tests/test_extras.py).
_WITHOUT_RAY_CLI = """
import sys
sys.modules["ray"] = None
from indexer.cli import main
sys.argv = ["indexer", *{args!r}]
main()
"""


def run_cli_without_ray(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The CLI in a new process where ``import ray`` fails, as without the extra."""
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_RAY_CLI.format(args=args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


@pytest.fixture(scope="module")
def ray_auth() -> Iterator[dict[str, str]]:
    """The token this process joins the test cluster with. Every test that imports ray here asks
    for it: ray reads these variables once, when first imported."""
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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = tmp_path_factory.mktemp("corpus")
    write_corpus(docs, files=CORPUS_FILES - 1, sentences=12)
    # A scan among them: read by OCR on the actors, as in the local build's chunking workers.
    (docs / "scan.png").write_bytes(encoded(render(SCAN_TEXT), "PNG"))
    return docs


def server_config(
    folder: Path, docs: Path, port: int, collection: str, *, engine: str, address: str | None = None
) -> Path:
    """A config indexing ``docs`` into ``collection`` on the Chroma server at ``port``."""
    folder.mkdir(parents=True, exist_ok=True)
    build: dict[str, Any] = {"engine": engine}
    if engine == "ray":
        build["ray"] = {"address": address, "actors": 2, "num_cpus": 1, "batch_size": 2}
    path = write_config(folder, docs, llm={"provider": "none"}, build=build, **SMALL)
    data = yaml.safe_load(path.read_text())
    # The shortest lease (vector_store.lease_ttl's minimum): the SIGKILL test waits for the dead
    # driver's lease to expire.
    data["vector_store"] = {"host": "127.0.0.1", "port": port, "collection": collection, "lease_ttl": 5}
    path.write_text(yaml.safe_dump(data))
    return path


def snapshot(config_path: Path) -> tuple[dict[str, int], dict[str, tuple[str, dict[str, Any], Any]]]:
    """The committed manifest (chunks per file) and every record of the live collection."""
    from indexer.config.loader import load_config
    from indexer.index.index import Index

    index = Index(load_config(config_path).vector_store)
    manifest = index.current()
    assert manifest is not None and not manifest.pending
    got = index.client.get_collection(index.collection_name()).get(
        include=["documents", "metadatas", "embeddings"]
    )
    records = {
        chunk_id: (text, meta, np.asarray(vector))
        for chunk_id, text, meta, vector in zip(
            got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
        )
    }
    return {doc: record.chunks for doc, record in manifest.files.items()}, records


def assert_same_index(got: Path, want: Path) -> None:
    got_files, got_records = snapshot(got)
    want_files, want_records = snapshot(want)
    assert got_files == want_files and len(got_files) == CORPUS_FILES
    assert sorted(got_records) == sorted(want_records)  # same ids: no duplicate, no orphan
    assert len(got_records) == sum(got_files.values())
    for chunk_id, (text, meta, vector) in want_records.items():
        assert got_records[chunk_id][:2] == (text, meta)
        np.testing.assert_allclose(got_records[chunk_id][2], vector, atol=VECTOR_TOLERANCE)


@pytest.fixture(scope="module")
def local_build(tmp_path_factory: pytest.TempPathFactory, corpus: Path, chroma_port: int) -> Path:
    """The reference: a local build of the corpus into the same Chroma server."""
    config = server_config(tmp_path_factory.mktemp("local"), corpus, chroma_port, "local", engine="local")
    result = run_cli("build", str(config), "--json")
    assert result.returncode == 0, result.stderr
    return config


def _lease(port: int, collection: str) -> dict[str, Any] | None:
    """The writer lease of ``collection`` on the Chroma server at ``port``, or ``None``."""
    from indexer.config.models import VectorStoreConfig
    from indexer.index.chroma import open_client
    from indexer.index.lock import LEASE_COLLECTION_SUFFIX, LEASE_RECORD_ID

    client = open_client(VectorStoreConfig(host="127.0.0.1", port=port, collection=collection))
    side = client.get_or_create_collection(f"{collection}{LEASE_COLLECTION_SUFFIX}")
    got = side.get(ids=[LEASE_RECORD_ID])
    return got["metadatas"][0] if got["ids"] else None


def run_in_terminal(args: list[str], env: dict[str, str], timeout: float = 600) -> tuple[int, str]:
    """``indexer ARGS`` with a pseudo-terminal for its output, as a user at a terminal sees it."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "indexer", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**os.environ, **env, "TERM": "xterm-256color", "COLUMNS": "160"},
    )
    os.close(follower)
    output = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process has exited
                break
            if not data:
                break
            output += data
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=30), output.decode(errors="replace")


# -- end to end: `indexer build` ------------------------------------------------------------------


@pytest.mark.slow
def test_a_sigkilled_driver_then_the_next_build_ends_as_a_clean_build(
    cluster: RayCluster, chroma_port: int, corpus: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from indexer.config.loader import load_config
    from indexer.index.index import Index

    config = server_config(tmp_path, corpus, chroma_port, "killed", engine="ray", address=cluster.address)
    build = subprocess.Popen(
        [sys.executable, "-m", "indexer", "build", str(config), "--json"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **cluster.env},
    )
    index = Index(load_config(config).vector_store)
    try:
        deadline = time.monotonic() + 300
        while True:  # killed at its first commit: midway, with batches in flight on the cluster
            manifest = index.current()
            if manifest is not None and manifest.files:
                break
            assert build.poll() is None, "the build ended before it could be killed: enlarge the corpus"
            assert time.monotonic() < deadline, "the build made no progress"
            time.sleep(0.05)
    finally:
        build.send_signal(signal.SIGKILL)
        build.wait()
    committed = len(manifest.files)
    assert 0 < committed < CORPUS_FILES

    # The dead driver's writer lease blocks the next build until it expires (index/lock.py): the
    # reference is built meanwhile, and the next build starts once the lease's own expiry has
    # passed rather than in a fresh interpreter every second before it.
    reference = request.getfixturevalue("local_build")
    lease = _lease(chroma_port, "killed")
    if lease is not None:
        time.sleep(max(0.0, float(lease["expires"]) - time.time()))
    deadline = time.monotonic() + 180
    while True:
        again = run_cli("build", str(config), "--json", env=cluster.env)
        if again.returncode == 0 or "another build" not in again.stderr or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["unchanged"] == committed and summary["added"] == CORPUS_FILES - committed
    assert_same_index(config, reference)


@pytest.mark.slow
def test_a_ray_build_equals_a_local_build_and_shows_chunks_embedded(
    cluster: RayCluster, chroma_port: int, corpus: Path, local_build: Path, tmp_path: Path
) -> None:
    config = server_config(tmp_path, corpus, chroma_port, "ray", engine="ray", address=cluster.address)
    code, output = run_in_terminal(["build", str(config)], cluster.env)
    assert code == 0, output
    # The progress bar counts chunks as they come back from the cluster.
    assert "Indexing (" in output and " chunks embedded)" in output
    assert f"Indexed {CORPUS_FILES} documents" in output
    assert_same_index(config, local_build)
    scanned = [meta for _, meta, _ in snapshot(config)[1].values() if meta["file"] == "scan.png"]
    assert scanned and all(meta["ocr"] is True and meta["ocr_confidence"] > 0.5 for meta in scanned)

    # Unchanged: the re-run needs no Ray at all, not even the package.
    rerun = run_cli_without_ray(["build", str(config), "--json"])
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert (summary["unchanged"], summary["chunks_embedded"]) == (CORPUS_FILES, 0)
    assert not [stage for stage in summary["stages"] if stage.startswith("ray_")]


def test_without_the_ray_extra_a_build_names_it(chroma_port: int, corpus: Path, tmp_path: Path) -> None:
    config = server_config(tmp_path, corpus, chroma_port, "no-ray", engine="ray", address="auto")
    result = run_cli_without_ray(["build", str(config)])
    assert result.returncode == 2, result.stderr
    assert "pip install 'indexer[ray]'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_unreachable_cluster_is_a_one_paragraph_error(
    scheme: str, chroma_port: int, tmp_path: Path
) -> None:
    address = f"{scheme}127.0.0.1:{free_port()}"  # nothing listens there
    config = server_config(tmp_path, SAMPLE_DIR, chroma_port, "unreachable", engine="ray", address=address)
    started = time.monotonic()
    result = run_cli("build", str(config), timeout=120)
    assert time.monotonic() - started < 60
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert f"cannot reach the Ray cluster at build.ray.address ({address})" in message
    assert "ray start --head" in message


@pytest.mark.slow
def test_a_worker_that_cannot_load_the_model_is_a_one_paragraph_error(
    cluster: RayCluster, chroma_port: int, tmp_path: Path
) -> None:
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    config = server_config(
        tmp_path, SAMPLE_DIR, chroma_port, "no-model", engine="ray", address=cluster.address
    )
    result = run_cli(
        "build", str(config), "--set", f"embedding.model={not_a_model}", env=cluster.env, timeout=300
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert (
        f"the Ray cluster at build.ray.address ({cluster.address}) cannot load the embedding model" in message
    )
    assert "not-a-model" in message


def test_actors_no_node_can_hold_are_a_one_paragraph_error(
    cluster: RayCluster, chroma_port: int, tmp_path: Path
) -> None:
    config = server_config(tmp_path, SAMPLE_DIR, chroma_port, "no-gpu", engine="ray", address=cluster.address)
    started = time.monotonic()
    result = run_cli("build", str(config), "--set", "build.ray.num_gpus=1", env=cluster.env, timeout=300)
    assert time.monotonic() - started < 60  # not Ray's wait for a node that never comes
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert f"no node of the cluster at build.ray.address ({cluster.address}) can hold" in message
    assert "build.ray.num_cpus, num_gpus" in message and "0 GPUs" in message


def test_an_embedded_store_is_refused_for_a_ray_build(tmp_path: Path) -> None:
    config = write_config(tmp_path, SAMPLE_DIR, build={"engine": "ray"})  # persist_dir: storage
    result = run_cli("build", str(config), timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "build.engine ray needs a Chroma server" in message
    assert "vector_store.host" in message and "build.ray" in message
    assert not (tmp_path / "storage").exists()


# -- the engine: a Ray worker killed mid-batch ----------------------------------------------------


def prepare_locally(config: Config, items: list[WorkItem]) -> dict[str, Prepared]:
    """What a local build makes of ``items``: the same functions, in this process."""
    from indexer.components import Components
    from indexer.ingestion.chunking import make_splitter
    from indexer.ingestion.prepare import read_and_chunk
    from indexer.ingestion.tables import embedding_text

    embedder = Components(config).embedder
    splitter = make_splitter(config.chunking, embedder.token_spans)
    out = {}
    for item in items:
        prepared = read_and_chunk(item, splitter)
        prepared.vectors = embedder.embed([embedding_text(c.text) for c in prepared.chunks])
        out[item.doc_id] = prepared
    return out


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


@pytest.mark.slow
def test_a_worker_killed_mid_batch_is_retried_with_the_same_result(
    cluster: RayCluster, tmp_path: Path
) -> None:
    import ray

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
    config = Config.model_validate(
        {
            "data": {"input_dir": str(docs)},
            "embedding": {"dtype": "float32"},
            "vector_store": {"host": "127.0.0.1", "port": free_port(), "collection": "engine"},
            "build": {"engine": "ray", "ray": {"address": cluster.address, "actors": 2, "batch_size": 2}},
        }
    )
    as_plain = WorkItem(slow.doc_id, str(plain), slow.hash, slow.size)
    want = prepare_locally(config, [*items[:2], as_plain, *items[3:]])

    fault = KillTheReaderOnce(fifo, text)
    fault.start()
    with RayEngine(config) as engine:
        got = list(engine.prepare(items))
        workers = engine.workers()
    fault.join(timeout=60)
    assert fault.error is None, fault.error
    assert "EmbeddingWorker.prepare" in fault.killed_title  # an actor, killed inside a batch
    # The batch ran again on the actor Ray restarted, in a new process.
    assert fault.killed not in {w.pid for w in workers} and fault.fed in {w.pid for w in workers}
    assert len({w.node_id for w in workers}) == 2  # one actor on each node
    assert {w.dtype for w in workers} == {"float32"}
    assert not ray.is_initialized()  # the engine disconnects when it joined

    assert sorted(p.item.doc_id for p in got) == sorted(want)  # each file exactly once
    for prepared in got:
        expected = want[prepared.item.doc_id]
        assert prepared.error is None
        assert [(c.id, c.text, c.metadata) for c in prepared.chunks] == [
            (c.id, c.text, c.metadata) for c in expected.chunks
        ]
        assert prepared.vectors.dtype == np.float32
        np.testing.assert_allclose(prepared.vectors, expected.vectors, atol=VECTOR_TOLERANCE)
