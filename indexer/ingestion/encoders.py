"""Where a local build embeds its chunks: in the build's own process, or in a process of its own.

In the build's process the encoder shares Python's GIL with everything else the build does: the
chunks arriving from the workers, the keyword index, the manifest, and above all Chroma's writes,
which hold the GIL for the whole upsert (about 0.4 ms a chunk on the development CPU;
``benchmarks/build.py`` measures it). Torch's CPU kernels run without the GIL, so on a CPU that
costs a few percent, and a second process would load the model a second time for nothing. A GPU
embeds faster than the one Python thread that feeds it, so there every millisecond of the build's
own Python comes out of the encoder (an H100 build kept 0.25 of its bare encode, README): with
``build.encoder_process`` (``auto``: on CUDA) the model lives in a child process that only embeds,
with calls queued behind the one it computes, so it does not wait for the build. That process
outlives its build, idle, for the next build of this process with the same model, as models loaded
in-process are kept (``embedding.load.load_embedding``).
"""

from __future__ import annotations

import atexit
import os
import pickle
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from indexer.components.devices import device_kind
from indexer.errors import ModelError

if TYPE_CHECKING:
    from indexer.components import Components
    from indexer.components.embedding import Embedder, PassageTokenizer
    from indexer.components.onnx_direct import OnnxEmbedder
    from indexer.config.models import Config, EmbeddingConfig

Passages = list[str] | list[Any]
"""One encode call's chunks: their texts, or their token ids from ``ModelFacts.passage_tokenizer``
(``Embedder.embed`` takes either)."""


@dataclass(frozen=True)
class ModelFacts:
    """What the build needs to know of the model besides its vectors."""

    tokenizer_json: str | None  # the fast tokenizer, for the chunking workers (None: a slow one)
    max_tokens: int
    # The encoder tokenizes texts with it, and the chunking workers when they make token ids; None:
    # the model's own preprocessing runs.
    passage_tokenizer: PassageTokenizer | None = None


class Encoder(Protocol):
    """Chunks in, vectors out, in order. ``submit`` hands over one call's chunks; ``result``
    returns the oldest call's vectors and the seconds the model spent on them. ``ahead`` calls may
    wait behind the one computing before the build must take a result."""

    ahead: int

    def facts(self) -> ModelFacts: ...

    def submit(self, passages: Passages) -> None: ...

    def result(self) -> tuple[Any, float]: ...

    def close(self) -> None: ...


class InProcessEncoder:
    """The build's own process embeds: ``submit`` computes at once."""

    ahead = 0

    def __init__(self, components: Components) -> None:
        self.components = components
        self._done: list[tuple[Any, float]] = []

    def facts(self) -> ModelFacts:
        return _facts(self.components.embedder)

    def submit(self, passages: Passages) -> None:
        started = time.perf_counter()
        vectors = self.components.embedder.embed(passages)
        self._done.append((vectors, time.perf_counter() - started))

    def result(self) -> tuple[Any, float]:
        return self._done.pop(0)

    def close(self) -> None:
        pass


class EncoderProcess:
    """A child process that loads the model and embeds, and nothing else."""

    # Calls queued behind the one computing: enough GPU work (three calls of eight batches) to
    # outlast the longest time the build's process cannot send, a Chroma write holding the GIL.
    ahead = 3

    def __init__(self, config: EmbeddingConfig) -> None:
        from indexer.ingestion.build_processes import fresh_child_context

        self.key = config.model_dump_json()
        context = fresh_child_context()
        self._requests = context.Queue()
        self._results = context.Queue()  # queues, not a pipe: both sides may send at once
        self._process = context.Process(
            target=_serve,
            args=(self._requests, self._results, self.key, os.getpid()),
            name="indexer-encoder",
            daemon=True,
        )
        self._process.start()
        self._facts: ModelFacts | None = None
        self._waiting = 0  # calls submitted whose result was not taken

    def facts(self) -> ModelFacts:
        """Waits for the model to load; its failure (no such model, no CUDA) is raised here."""
        if self._facts is None:
            self._facts = self._receive()
        return self._facts

    def submit(self, passages: Passages) -> None:
        self.facts()
        self._requests.put(passages)
        self._waiting += 1

    def result(self) -> tuple[Any, float]:
        vectors, seconds = self._receive()
        self._waiting -= 1
        return vectors, seconds

    def _receive(self) -> Any:
        while True:
            try:
                kind, value = self._results.get(timeout=0.5)
            except queue.Empty:
                if self._process.is_alive():
                    continue
                try:  # what it sent just before it ended
                    kind, value = self._results.get(timeout=1.0)
                except queue.Empty:
                    raise ModelError(
                        f"the embedding process ended unexpectedly (exit code {self._process.exitcode}); "
                        "if the machine ran out of memory, lower embedding.batch_size"
                    ) from None
            if kind == "error":
                raise value
            return value

    def close(self) -> None:
        """Ends the build's use of the process. One that loaded its model and answered every call is
        kept for the next build (``_park``): a new one would import torch and load the model again,
        seconds that on a GPU exceed the encoding of thousands of chunks."""
        if self._facts is not None and not self._waiting and self.usable():
            _park(self)
        else:
            self.shutdown()

    def shutdown(self) -> None:
        """Ends the process: at once when calls are left unanswered (the build failed)."""
        if self._process.is_alive() and not self._waiting:
            self._requests.put(None)
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._requests.close()
        self._results.close()

    def usable(self) -> bool:
        return self._process.is_alive()


# Idle encoder processes by model config, oldest first, for the next build of this process. Each
# holds a model (on a GPU, a CUDA context too), so only a few are kept.
_IDLE: dict[str, EncoderProcess] = {}
_IDLE_LIMIT = 2
_IDLE_LOCK = threading.Lock()


def _park(process: EncoderProcess) -> None:
    with _IDLE_LOCK:
        # Registered after multiprocessing's own exit handler, so it runs before it (last in, first out).
        atexit.unregister(_end_idle)
        atexit.register(_end_idle)
        ended = [p for p in [_IDLE.pop(process.key, None)] if p is not None]
        _IDLE[process.key] = process
        while len(_IDLE) > _IDLE_LIMIT:
            ended.append(_IDLE.pop(next(iter(_IDLE))))
    for p in ended:
        p.shutdown()


def _end_idle() -> None:
    """At exit, end the idle processes in order and let go of their queues: left to
    multiprocessing, each is killed and its queues' semaphores reported as leaked."""
    with _IDLE_LOCK:
        ended = list(_IDLE.values())
        _IDLE.clear()
    for process in ended:
        process.shutdown()


def _encoder_process(config: EmbeddingConfig) -> EncoderProcess:
    """An idle process with this model, or a new one. A build takes it for itself: two builds at
    once get two processes."""
    with _IDLE_LOCK:
        idle = _IDLE.pop(config.model_dump_json(), None)
    if idle is not None and idle.usable():
        return idle
    if idle is not None:
        idle.shutdown()
    return EncoderProcess(config)


def resolve_encoder_process(config: Config) -> tuple[bool, str]:
    """Whether a local build embeds in a process of its own (``build.encoder_process``), and why."""
    wanted = config.build.encoder_process
    if wanted != "auto":
        return wanted, f"build.encoder_process {str(wanted).lower()}"
    if config.embedding.device.startswith("cuda"):
        return True, "build.encoder_process auto: on CUDA the build's other Python work would slow the GPU"
    return False, "build.encoder_process auto: on a CPU that work costs a few percent"


def resolve_tokenize_in_workers(config: Config) -> tuple[bool, str]:
    """Whether a local build's chunking workers make the chunks' token ids
    (``build.tokenize_in_workers``), and why."""
    wanted = config.build.tokenize_in_workers
    if wanted != "auto":
        return wanted, f"build.tokenize_in_workers {str(wanted).lower()}"
    if device_kind(config.embedding.device) != "cpu":
        return True, "build.tokenize_in_workers auto: on a GPU tokenizing would be most of the encoder's work"
    return False, "build.tokenize_in_workers auto: on a CPU the workers share the encoder's cores"


# The most chunks a CPU build embeds on the torch-free ONNX route (``onnx_direct.py``) before it
# loads torch for the bfloat16 streams. Measured by benchmarks/cold_start.py --switch-point, each
# route cold in a new process (imports, model load, embedding), on 2 shared cores of an AMD EPYC
# with avx512_bf16 at load 4 to 6: 32 chunks took 8.0 s on ONNX against 15.2 s on torch, 128 took
# 17.3 against 13.3, 512 took 65.3 against 24.7. ONNX costs ~0.1 s a chunk more, torch ~7 s more
# to start: they cross near 70 chunks. A one-file edit is a few chunks.
ONNX_ROUTE_MAX_CHUNKS = 64


class SmallBuildEncoder:
    """A CPU build's encoder that embeds on the torch-free ONNX route (float32, the vectors of the
    model's own up to rounding) while the build has embedded at most ``ONNX_ROUTE_MAX_CHUNKS``
    chunks, and hands larger builds, from their first call over it, to the torch streams."""

    ahead = 0

    def __init__(self, components: Components, direct: OnnxEmbedder) -> None:
        self.components = components
        self.direct = direct
        self.embedded = {"onnx": 0, "torch": 0}
        self.max_chunks = onnx_max_chunks(components.config)
        self._torch: InProcessEncoder | None = None
        self._done: list[tuple[Any, float]] = []

    def facts(self) -> ModelFacts:
        # The recipe's tokenizer is the model's own (chunking lifts its truncation), so chunks are
        # cut alike on either route.
        return _facts(self.direct)

    def submit(self, passages: Passages) -> None:
        if self._torch is None and sum(self.embedded.values()) + len(passages) <= self.max_chunks:
            started = time.perf_counter()
            vectors = self.direct.embed([str(p) for p in passages])
            self._done.append((vectors, time.perf_counter() - started))
            self.embedded["onnx"] += len(passages)
            return
        if self._torch is None:
            self._torch = InProcessEncoder(self.components)
        self._torch.submit(passages)
        self._done.append(self._torch.result())
        self.embedded["torch"] += len(passages)

    def result(self) -> tuple[Any, float]:
        return self._done.pop(0)

    def close(self) -> None:
        pass

    def route(self) -> dict[str, str] | None:
        """How the build embedded, for its summary; ``None`` when torch did it all."""
        onnx, torch = self.embedded["onnx"], self.embedded["torch"]
        if not onnx:
            return None
        reason = f"{onnx} chunks on the torch-free ONNX route (builds of up to {self.max_chunks} chunks)"
        if torch:
            return {
                "dtype": "float32 and bfloat16",
                "reason": f"{reason}, {torch} on the torch streams",
                "route": "onnx+torch",
            }
        return {"dtype": "float32", "reason": reason, "route": "onnx"}


def onnx_max_chunks(config: Config) -> int:
    """``build.onnx_max_chunks``, ``auto`` resolved."""
    wanted = config.build.onnx_max_chunks
    return ONNX_ROUTE_MAX_CHUNKS if wanted == "auto" else wanted


def direct_route(config: Config, *, torch_loaded: bool | None = None) -> OnnxEmbedder | None:
    """The torch-free embedder a CPU build may start on, or ``None``: a GPU, another backend, a
    dtype set by hand, a model without its ONNX recipe yet (the first build writes it), or, with
    ``build.onnx_max_chunks: auto``, a process that has imported sentence-transformers already
    (``torch_loaded``, default: whether it has). The route's gain is the 5 s of imports it saves;
    where they are paid (a server or watcher that ran a large build, the Python API, eval), torch's
    bfloat16 streams embed a small build in about half the CPU time of the ONNX float route."""
    embedding = config.embedding
    if not onnx_max_chunks(config) or device_kind(embedding.device) != "cpu" or embedding.backend != "torch":
        return None
    if torch_loaded is None:
        torch_loaded = "sentence_transformers" in sys.modules
    if config.build.onnx_max_chunks == "auto" and torch_loaded:
        return None
    if embedding.provider != "sentence_transformers":
        return None
    if embedding.quantization != "none" or embedding.dtype not in ("auto", "float32"):
        return None
    from indexer.components.onnx_direct import load_direct

    return load_direct(embedding.model_copy(update={"backend": "onnx", "query_backend": "onnx"}))


def make_encoder(components: Components) -> Encoder:
    apart, _ = resolve_encoder_process(components.config)
    if apart:
        return _encoder_process(components.config.embedding)
    direct = direct_route(components.config)
    return InProcessEncoder(components) if direct is None else SmallBuildEncoder(components, direct)


# -- in the encoder process -------------------------------------------------------------------------


def _serve(requests: Any, results: Any, config_json: str, build_pid: int) -> None:
    from indexer.ingestion.build_processes import exit_with_build

    exit_with_build(build_pid)
    inbox = _drain(requests)
    from indexer.components.embedding import load_embedder
    from indexer.config.models import EmbeddingConfig

    try:
        embedder = load_embedder(EmbeddingConfig.model_validate_json(config_json))
        results.put(("facts", _facts(embedder)))
    except BaseException as exc:
        results.put(("error", _portable(exc)))
        return
    while (passages := inbox.get()) is not None:
        try:
            started = time.perf_counter()
            vectors = embedder.embed(passages)
            results.put(("vectors", (vectors, time.perf_counter() - started)))
        except BaseException as exc:
            results.put(("error", _portable(exc)))
            return


def _facts(embedder: Embedder) -> ModelFacts:
    return ModelFacts(embedder.tokenizer_json, embedder.max_tokens, embedder.passage_tokenizer)


def _drain(requests: Any) -> queue.Queue[Passages | None]:
    """Requests read as soon as they arrive, by a thread of their own: a request (hundreds of KB)
    crosses a 64 KB pipe only while both ends work on it, and the build's end needs the GIL for
    that, which a Chroma write holds for up to a second. Read eagerly, the calls queued ahead are
    here before the current one ends."""
    inbox: queue.Queue[Passages | None] = queue.Queue()

    def receive() -> None:
        while True:
            passages = requests.get()
            inbox.put(passages)
            if passages is None:
                return

    threading.Thread(target=receive, name="indexer-encoder-inbox", daemon=True).start()
    return inbox


def _portable(exc: BaseException) -> BaseException:
    """The error as the build's process can receive it: itself when it pickles, else its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
