"""``build.engine: ray``: read, chunk and embed files on a Ray cluster.

The driver keeps what must stay single (the plan, the writer lease, the intent log, the writes to
Chroma and the commit: ``ingestion/pipeline.py``); this engine only turns work items into
``Prepared`` items. Each embedding actor loads the model once and runs the very code a local build
runs (``read_and_chunk``, ``Embedder.embed``), so chunk ids and texts are the same and vectors equal
to float tolerance.

Work goes out through Ray's ``ActorPool`` in tasks of ``build.ray.batch_size`` files. Actors restart
when their worker process dies and Ray retries the task it was running, so a killed worker costs
time, not files.

Workers read each file from the path the driver planned with: on a multi-node cluster every node
must see the documents under the same paths (a shared filesystem), with indexer and the embedding
model installed.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from indexer.config.models import Config, RayConfig
from indexer.errors import ClusterError, IndexerError, ModelError
from indexer.ingestion.prepare import Prepared, WorkItem

if TYPE_CHECKING:
    from ray.actor import ActorHandle

    from indexer.components.embedding import Embedder

RAY_EXTRA = "pip install 'indexer[ray]'"
# A dead worker is restarted, and its task retried, this many times: enough for a lost node or an
# OOM-killed process, while a file that kills every worker that reads it still ends the build.
WORKER_RETRIES = 3
# Batches queued per actor: ActorPool hands each handle one task at a time, so each actor is listed
# this many times; it then starts its next batch while the driver is still writing the last one.
TASKS_PER_ACTOR = 2
# A TCP connect to the cluster's port first: Ray itself retries an unreachable address for minutes.
CONNECT_TIMEOUT_S = 5.0
# Loading a model on a cold node may download it first.
ACTOR_START_TIMEOUT_S = 600.0
# A cluster started here turns on Ray's token authentication by itself and says so at every build;
# nothing for the user to do about it.
_TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
_RAY_CLIENT_PORT = 10001
_RAY_GCS_PORT = 6379


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as exc:
        raise IndexerError(
            f"build.engine ray needs the ray extra ({exc.name} is missing): {RAY_EXTRA}"
        ) from None
    return ray


@dataclass(frozen=True)
class WorkerStatus:
    """Where an embedding actor runs, and why its model did not load (``None`` when it did)."""

    host: str
    node_id: str
    pid: int
    error: str | None
    busy_s: float = 0.0
    """Seconds spent reading, chunking and embedding since the actor (re)started."""
    dtype: str = ""
    """The number format this actor embeds in: ``embedding.dtype: auto`` is resolved on each node,
    for its own CPU or GPU."""


class EmbeddingWorker:
    """A Ray actor: one copy of the embedding model, and the chunking a local build uses."""

    def __init__(self, config: Config) -> None:
        # A load failure is kept and reported by ``status`` rather than raised: an exception here
        # would only reach the driver as a dead actor, without the model's own message.
        self.error: str | None = None
        self.embedder: Embedder | None = None
        self.busy_s = 0.0
        self.dtype = ""
        try:
            from indexer.components import Components
            from indexer.components.embedding import resolve_dtype
            from indexer.ingestion.chunking import make_splitter

            self.dtype = resolve_dtype(config.embedding)[0]

            embedder = Components(config).embedder
            # Loads the model; also the shape of a batch without text: (0, dimension).
            self.dimension = int(embedder.identity.dimension or 0)
            embedder.passage_tokenizer  # noqa: B018  (checked once, at the actor's start)
            self.splitter = make_splitter(config.chunking, embedder.token_spans)
            self.embedder = embedder
        except Exception as exc:  # any failure here means the same thing: no model on this node
            self.error = str(exc) if isinstance(exc, IndexerError) else f"{type(exc).__name__}: {exc}"

    def status(self) -> WorkerStatus:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
        return WorkerStatus(socket.gethostname(), node_id, os.getpid(), self.error, self.busy_s, self.dtype)

    def prepare(self, items: list[WorkItem]) -> list[Prepared]:
        import numpy as np

        from indexer.ingestion.prepare import read_and_chunk
        from indexer.ingestion.tables import embedding_text

        if self.error is not None or self.embedder is None:
            raise ModelError(self.error or "the embedding model did not load")
        started = time.perf_counter()
        prepared = [read_and_chunk(item, self.splitter) for item in items]
        texts = [embedding_text(chunk.text) for p in prepared for chunk in p.chunks]
        vectors = np.empty((0, self.dimension), dtype=np.float32)
        if texts:
            vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        start = 0
        for p in prepared:
            if p.error is None:
                p.vectors = vectors[start : start + len(p.chunks)]
                start += len(p.chunks)
        self.busy_s += time.perf_counter() - started
        return prepared


class RayEngine:
    """Prepares work items on the cluster at ``build.ray.address``; connects when created."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings: RayConfig = config.build.ray
        self._ray = import_ray()
        # Wall time per step, for the build summary's stages: joining the cluster, starting the
        # actors (a model load each), and the driver waiting on results (the cluster's pace).
        self.seconds: dict[str, float] = {"ray_connect": 0.0, "ray_start_actors": 0.0, "ray_wait": 0.0}
        started = time.perf_counter()
        self._disconnect = connect(self._ray, self.settings)
        self.seconds["ray_connect"] = time.perf_counter() - started
        self._actors: list[ActorHandle] = []

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def prepare(self, items: Sequence[WorkItem]) -> Iterator[Prepared]:
        import numpy as np
        from ray.util import ActorPool

        size = self.settings.batch_size
        batches = [list(items[at : at + size]) for at in range(0, len(items), size)]
        if not batches:
            return
        started = time.perf_counter()
        actors = self._start_actors(min(self.settings.actors, len(batches)))
        self.seconds["ray_start_actors"] += time.perf_counter() - started
        pool = ActorPool(actors * TASKS_PER_ACTOR)
        results = pool.map_unordered(lambda actor, batch: actor.prepare.remote(batch), batches)
        while True:
            started = time.perf_counter()
            try:
                batch = next(results)
            except StopIteration:
                return
            except self._ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, IndexerError):
                    raise _on_cluster(exc.cause, self.settings) from None
                raise
            except self._ray.exceptions.RayActorError as exc:
                raise ClusterError(
                    f"a Ray worker died {WORKER_RETRIES + 1} times on the same batch of files on "
                    f"the cluster at build.ray.address ({_address(self.settings)}), so the build "
                    f"stops: {_first_line(exc)}. A worker is usually killed for want of memory: fewer "
                    "actors per node (a larger build.ray.num_cpus each) or a smaller "
                    "build.ray.batch_size leave each one more."
                ) from None
            finally:
                self.seconds["ray_wait"] += time.perf_counter() - started
            for prepared in batch:
                if prepared.vectors is not None:
                    # A copy, so the driver holds no zero-copy view pinning the object store.
                    prepared.vectors = np.array(prepared.vectors)
                yield prepared

    def workers(self) -> list[WorkerStatus]:
        """The embedding actors of the last ``prepare``, as they are now."""
        return self._ray.get([actor.status.remote() for actor in self._actors])

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
        if self._disconnect:
            self._ray.shutdown()
            self._disconnect = False

    def _start_actors(self, count: int) -> list[ActorHandle]:
        """``count`` ready actors: those of an earlier ``prepare`` first, so a second call on the
        same engine loads no model again."""
        ray = self._ray
        settings = self.settings
        missing = count - len(self._actors)
        if missing <= 0:
            return self._actors[:count]
        check_resources(ray, settings)
        worker = ray.remote(EmbeddingWorker).options(
            num_cpus=settings.num_cpus,
            num_gpus=settings.num_gpus,
            max_restarts=WORKER_RETRIES,
            max_task_retries=WORKER_RETRIES,
            # One model per node before a second on any: a node's cores are better spent on one.
            scheduling_strategy="SPREAD",
        )
        started = [worker.remote(self.config) for _ in range(missing)]
        self._actors += started  # killed by close() whatever happens next
        ready = [actor.status.remote() for actor in started]
        done, pending = ray.wait(ready, num_returns=len(ready), timeout=ACTOR_START_TIMEOUT_S)
        if pending:
            raise ClusterError(
                f"only {len(done)} of {missing} embedding actors started within "
                f"{ACTOR_START_TIMEOUT_S:.0f} s on the cluster at build.ray.address "
                f"({_address(settings)}): its free resources are {_free(ray)}, and each actor asks "
                f"for {settings.num_cpus} CPUs and {settings.num_gpus} GPUs (build.ray.num_cpus, "
                "num_gpus, actors). Other jobs may hold them, or a node is still loading the model."
            )
        for reply in done:
            try:
                status: WorkerStatus = ray.get(reply)
            except ray.exceptions.RayActorError as exc:
                raise ClusterError(
                    f"an embedding actor died while starting on the cluster at build.ray.address "
                    f"({_address(settings)}): {_first_line(exc)}"
                ) from None
            if status.error is not None:
                raise _on_cluster(ModelError(status.error), settings, status.host)
        return self._actors[:count]


def connect(ray: ModuleType, settings: RayConfig) -> bool:
    """Join (or start) the cluster; true when this call did, so ``close`` should disconnect."""
    if ray.is_initialized():
        return False  # the caller's own Ray session (a notebook, a script): used as it is
    address = settings.address
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        # "local" starts a cluster in this process even where RAY_ADDRESS names another.
        cpus = math.ceil(settings.actors * settings.num_cpus)
        options.update(address="local", num_cpus=cpus, include_dashboard=False)
    else:
        check_reachable(address)
        options["address"] = address
    try:
        if address is None:
            with _quiet(_TOKEN_NOTICE_LOGGER):
                ray.init(**options)
        else:
            ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(
            f"cannot connect to the Ray cluster at build.ray.address ({_address(settings)}): "
            f"{_first_line(exc)}. A cluster with token authentication (Ray's default) needs "
            "RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN, or ~/.ray/auth_token) on this "
            "machine, and this machine's Ray and Python versions must match the cluster's."
        ) from None
    return True


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_reachable(address: str) -> None:
    """Refuse quickly an address nothing listens on; ``auto`` is found by Ray on this machine."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"//{address}")
    default_port = _RAY_CLIENT_PORT if parts.scheme == "ray" else _RAY_GCS_PORT
    malformed = f"build.ray.address {address!r} is not auto, ray://host:port or host:port"
    try:
        host, port = parts.hostname, parts.port or default_port
    except ValueError as exc:
        raise ClusterError(f"{malformed}: {exc}") from None
    if not host:
        raise ClusterError(malformed)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Ray cluster at build.ray.address ({address}): {exc.strerror or exc}. "
            "Is it running (`ray start --head` on that machine) and is the port open from here? "
            "Leave build.ray.address unset to run a local cluster in this process."
        ) from None


def check_resources(ray: ModuleType, settings: RayConfig) -> None:
    """Refuse actors no node can hold: Ray would wait for such a node forever."""
    nodes: list[dict[str, float]] = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(
        node.get("CPU", 0) >= settings.num_cpus and node.get("GPU", 0) >= settings.num_gpus for node in nodes
    ):
        return
    empty: dict[str, float] = {}
    largest = max(nodes, key=lambda node: (node.get("GPU", 0), node.get("CPU", 0)), default=empty)
    raise ClusterError(
        f"no node of the cluster at build.ray.address ({_address(settings)}) can hold an embedding "
        f"actor: each asks for {settings.num_cpus} CPUs and {settings.num_gpus} GPUs "
        f"(build.ray.num_cpus, num_gpus), and the largest node has {largest.get('CPU', 0):g} CPUs "
        f"and {largest.get('GPU', 0):g} GPUs."
    )


def _on_cluster(error: IndexerError, settings: RayConfig, host: str | None = None) -> IndexerError:
    """The worker's own error, saying where it happened."""
    where = f"node {host} of " if host else ""
    if isinstance(error, ModelError):
        return ModelError(
            f"an embedding actor on {where}the Ray cluster at build.ray.address "
            f"({_address(settings)}) cannot load the embedding model: {error} Every node needs the "
            "model (embedding.model) and indexer installed."
        )
    return type(error)(f"on {where}the Ray cluster at build.ray.address ({_address(settings)}): {error}")


def _address(settings: RayConfig) -> str:
    return settings.address or "unset: a local cluster in this process"


def _free(ray: ModuleType) -> str:
    free = ray.available_resources()
    return f"{free.get('CPU', 0):g} CPUs and {free.get('GPU', 0):g} GPUs"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
