"""embedding.dtype: the setting, the automatic choice and its reason, bfloat16 vectors against
float32 ones from the bundled MiniLM, and what the index records; plus how model loading treats the
process environment (HF_HUB_OFFLINE, OMP_WAIT_POLICY) and a Hugging Face model's fingerprint."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from indexer import Indexer
from indexer.components.embedding import (
    SentenceTransformerEmbedder,
    config_identity,
    resolve_dtype,
    resolve_model_location,
)
from indexer.components.embedding.load import load_embedding
from indexer.components.openmp_env import set_wait_policy_before_torch
from indexer.config import load_config
from indexer.config.models import EmbeddingConfig
from indexer.cpu import cpu_flags
from indexer.doctor import diagnose
from indexer.errors import ConfigError
from indexer.index.manifest import EMBEDDING_KEYS
from tests.adversarial.helpers import cli
from tests.conftest import ROOT

TEXTS = [
    "gauge",
    "How often should the rain gauge funnel be cleaned?",
    "Error E-214 means the modem lost its signal; AUR-2231-X is the replacement antenna cable. " * 4,
    "calibration " * 400,
]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("dtype", ["auto", "float32", "bfloat16", "float16"])
def test_config_accepts_each_dtype(dtype: str) -> None:
    assert EmbeddingConfig(dtype=dtype).dtype == dtype


def test_config_rejects_another_dtype_naming_the_setting_and_the_choices(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("data: {input_dir: docs}\nvector_store: {persist_dir: store, collection: base}\n")
    with pytest.raises(ConfigError, match=r"embedding\.dtype.*'auto', 'float32', 'bfloat16' or 'float16'"):
        load_config(path, ["embedding.dtype=half"])


def test_a_reduced_dtype_with_the_onnx_backend_is_refused() -> None:
    with pytest.raises(ValidationError, match="dtype 'bfloat16' applies to backend: torch"):
        EmbeddingConfig(backend="onnx", dtype="bfloat16")
    assert resolve_dtype(EmbeddingConfig(backend="onnx")) == (
        "float32",
        "backend onnx runs the exported float32 model",
    )


def test_auto_resolution_follows_the_device_and_the_cpu_and_says_why() -> None:
    dtype, reason = resolve_dtype(EmbeddingConfig())
    if cpu_flags() & {"amx_bf16", "avx512_bf16"}:
        assert dtype == "bfloat16" and ("amx_bf16" in reason or "avx512_bf16" in reason)
    else:
        assert dtype == "float32" and "neither AMX nor AVX512-BF16" in reason
    assert resolve_dtype(EmbeddingConfig(device="cuda:1"))[0] == "float16"
    assert resolve_dtype(EmbeddingConfig(device="mps"))[0] == "float32"
    assert resolve_dtype(EmbeddingConfig(dtype="float32")) == ("float32", "set by embedding.dtype")


def test_bfloat16_vectors_are_close_to_float32_vectors_for_passages_and_questions() -> None:
    full = SentenceTransformerEmbedder(EmbeddingConfig(dtype="float32"))
    reduced = SentenceTransformerEmbedder(EmbeddingConfig(dtype="bfloat16"))
    passages = _cosines(full.encode(TEXTS), reduced.encode(TEXTS))
    assert passages.min() > 0.999, passages
    question = "rain gauge cleaning interval"
    q_full = np.asarray([full.embed_query(question)])
    q_reduced = np.asarray([reduced.embed_query(question)])
    # Questions go through the same reduced-precision forward: close, but not bit-identical.
    assert 0.999 < _cosines(q_full, q_reduced)[0] < 1 - 1e-7


def test_the_identity_records_the_dtype_which_the_index_does_not_check() -> None:
    assert config_identity(EmbeddingConfig(dtype="bfloat16")).dtype == "bfloat16"
    assert SentenceTransformerEmbedder(EmbeddingConfig(dtype="float32")).identity.dtype == "float32"
    # bfloat16 and float32 vectors retrieve the same passages (benchmarks/embedding_dtype.py).
    assert "dtype" not in EMBEDDING_KEYS


@pytest.mark.slow
def test_an_index_built_in_float32_is_queried_and_appended_to_in_bfloat16(
    sample_copy: Path, make_config
) -> None:
    config = make_config(sample_copy, embedding={"dtype": "float32"}, retrieval={"mode": "vector"})
    Indexer.from_config(config).build()
    question = "rain gauge calibration"
    bf16 = {"embedding.dtype": "bfloat16", "embedding.query_backend": "torch"}
    full_hits = Indexer.from_config(config, {"embedding.query_backend": "torch"}).retrieve(question, top_k=3)
    reduced_hits = Indexer.from_config(config, bf16).retrieve(question, top_k=3)
    assert [h.file for h in reduced_hits] == [h.file for h in full_hits]

    (sample_copy / "added.md").write_text("The anemometer cups are replaced every two years.\n")
    summary = Indexer.from_config(config, bf16).build()
    assert summary.chunks_embedded > 0
    status = cli("status", str(config), "--json")
    assert status.returncode == 0, status.stderr


def test_loading_a_local_model_leaves_hf_hub_offline_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    load_embedding(EmbeddingConfig(dtype="float32", batch_size=3))  # a config not loaded before
    assert "HF_HUB_OFFLINE" not in os.environ  # a later llm.repo_id download is still allowed


@pytest.mark.slow
def test_openmp_wait_policy_is_set_before_torch_loads_not_at_import() -> None:
    script = (
        "import os, sys\n"
        "import indexer.components\n"
        "assert 'OMP_WAIT_POLICY' not in os.environ and 'torch' not in sys.modules\n"
        "from indexer.components.embedding.load import load_embedding\n"
        "from indexer.config.models import EmbeddingConfig\n"
        "load_embedding(EmbeddingConfig())\n"
        "print(os.environ['OMP_WAIT_POLICY'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "PASSIVE"


def test_a_users_own_openmp_wait_policy_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    set_wait_policy_before_torch()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_hub_model_has_no_fingerprint_until_downloaded_then_that_of_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_INDEX_CACHE_DIR", str(tmp_path))
    config = EmbeddingConfig(model="someone/minilm-copy")
    assert config_identity(config).fingerprint is None  # unknown, so not checked yet
    # The Hub's cache layout, as a download leaves it, holding the bundled model's files.
    repo = tmp_path / "models--someone--minilm-copy"
    shutil.copytree(resolve_model_location("default"), repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    bundled = config_identity(EmbeddingConfig()).fingerprint
    assert config_identity(config).fingerprint == bundled


def test_doctor_shows_the_dtype_and_why(make_config) -> None:
    config = load_config(make_config(llm={"provider": "none"}, embedding={"dtype": "auto"}))
    rows = dict(dict(diagnose(config).sections)["Embedding"])
    dtype, reason = resolve_dtype(config.embedding)
    assert rows["dtype"] == f"{dtype} (embedding.dtype auto: {reason})"
