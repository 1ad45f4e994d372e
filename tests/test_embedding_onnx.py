"""The ONNX Runtime embedding backend: the bundled MiniLM exported by the test itself, run by
onnxruntime, checked against the torch model it came from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer import Indexer
from indexer.components.embedding import SentenceTransformerEmbedder
from indexer.components.embedding.load import load_embedding
from indexer.config.models import EmbeddingConfig
from indexer.errors import ConfigError, IndexMismatchError, ModelError
from tests.adversarial.helpers import cli

pytest.importorskip("onnx", reason="the 'onnx' extra exports the model")

# Lengths from one word to past the 256-token limit, in one padded batch.
TEXTS = [
    "gauge",
    "How often should the rain gauge funnel be cleaned?",
    "Error E-214 means the modem lost its signal; AUR-2231-X is the replacement antenna cable. " * 4,
    "calibration " * 400,
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of exported models for the module: an export takes seconds."""
    return tmp_path_factory.mktemp("onnx")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_onnx_vectors_equal_torch_vectors(exported: Path) -> None:
    torch_model = SentenceTransformerEmbedder(EmbeddingConfig(dtype="float32"))
    path = exported / "minilm.onnx"
    onnx_model = SentenceTransformerEmbedder(EmbeddingConfig(backend="onnx", backend_file=str(path)))
    assert type(onnx_model.sentence_transformer[0].model).__name__ == "OnnxTransformer"
    assert path.is_file()  # exported on first use, where the config said
    # onnxruntime has threads of its own: a build runs it as one stream, torch as one per thread.
    import torch

    assert onnx_model.streams == 1
    assert torch_model.streams == torch.get_num_threads()

    cos = _cosines(torch_model.encode(TEXTS), onnx_model.encode(TEXTS))
    assert cos.min() > 0.9999, cos
    query = "rain gauge cleaning interval"
    q_cos = _cosines(
        np.asarray([torch_model.embed_query(query)]),
        np.asarray([onnx_model.embed_query(query)]),
    )
    assert q_cos[0] > 0.9999


@pytest.mark.slow
def test_int8_vectors_stay_close_and_the_file_is_smaller(exported: Path) -> None:
    torch_model = SentenceTransformerEmbedder(EmbeddingConfig(dtype="float32"))
    path = exported / "minilm-int8.onnx"
    int8 = SentenceTransformerEmbedder(
        EmbeddingConfig(backend="onnx", quantization="int8", backend_file=str(path))
    )
    cos = _cosines(torch_model.encode(TEXTS), int8.encode(TEXTS))
    assert 0.95 < cos.min() < 0.9999, cos  # close, but not the float model's vectors
    assert path.stat().st_size < (exported / "minilm.onnx").stat().st_size / 2


@pytest.mark.slow
def test_onnx_queries_a_torch_built_index_but_int8_is_refused(
    sample_copy: Path, make_config, exported: Path
) -> None:
    config = make_config(sample_copy, retrieval={"mode": "vector"})
    Indexer.from_config(config).build()
    torch_hits = Indexer.from_config(config).retrieve("rain gauge calibration", top_k=3)

    onnx = Indexer.from_config(
        config,
        {"embedding.backend": "onnx", "embedding.backend_file": str(exported / "minilm.onnx")},
    )
    onnx_hits = onnx.retrieve("rain gauge calibration", top_k=3)
    assert [h.file for h in onnx_hits] == [h.file for h in torch_hits]
    assert onnx_hits[0].score == pytest.approx(torch_hits[0].score, abs=1e-4)

    int8 = Indexer.from_config(
        config,
        {
            "embedding.backend": "onnx",
            "embedding.quantization": "int8",
            "embedding.backend_file": str(exported / "minilm-int8.onnx"),
        },
    )
    with pytest.raises(IndexMismatchError, match="quantization: index has 'none', config gives 'int8'"):
        int8.retrieve("rain gauge calibration")
    with pytest.raises(IndexMismatchError, match="quantization"):
        int8.build()
    # The refused build left the index as it was.
    assert [h.file for h in Indexer.from_config(config).retrieve("rain gauge calibration", top_k=3)] == [
        h.file for h in torch_hits
    ]


@pytest.mark.slow
def test_an_int8_index_builds_records_its_backend_and_answers(
    sample_copy: Path, make_config, exported: Path
) -> None:
    config = make_config(
        sample_copy,
        embedding={
            "backend": "onnx",
            "quantization": "int8",
            "backend_file": str(exported / "minilm-int8.onnx"),
        },
    )
    done = cli("build", str(config), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["chunks_embedded"] > 0
    status = cli("status", str(config), "--json")
    assert status.returncode == 0, status.stderr
    embedding = json.loads(status.stdout)["manifest"]["embedding"]
    assert embedding["quantization"] == "int8" and embedding["backend"] == "onnx"
    hits = Indexer.from_config(config, {"retrieval.mode": "vector"}).retrieve("rain gauge calibration")
    assert "guides/calibration.md" in [h.file for h in hits[:3]], [(h.file, h.score) for h in hits]


@pytest.mark.slow
def test_a_corrupt_model_file_is_a_clear_error(tmp_path: Path, make_config) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(ModelError, match=r"(?s)cannot load the ONNX embedding model .*broken\.onnx.*Delete"):
        load_embedding(EmbeddingConfig(backend="onnx", backend_file=str(broken)))
    config = make_config(embedding={"backend": "onnx", "backend_file": str(broken)})
    failed = cli("build", str(config))
    assert failed.returncode == 2
    assert "broken.onnx" in failed.stderr and "Traceback" not in failed.stderr


def test_onnx_settings_are_validated(make_config) -> None:
    with pytest.raises(ConfigError, match=r"(?s)embedding.*quantization applies only to backend: onnx"):
        Indexer.from_config(make_config(embedding={"quantization": "int8"}))
    with pytest.raises(ConfigError, match="query_backend must be onnx or auto"):
        Indexer.from_config(
            make_config(embedding={"backend": "onnx", "quantization": "int8", "query_backend": "torch"})
        )
    with pytest.raises(ConfigError, match=r"(?s)embedding.*runs on the CPU"):
        Indexer.from_config(make_config(embedding={"backend": "onnx", "device": "cuda"}))
    with pytest.raises(ConfigError, match="quantization"):
        Indexer.from_config(make_config(embedding={"backend": "onnx", "quantization": "int4"}))


def test_questions_go_through_onnx_by_default_without_loading_the_passage_model(built_sample: Path) -> None:
    ix = Indexer.from_config(built_sample, {"retrieval.mode": "vector"})
    hits = ix.retrieve("rain gauge calibration", top_k=2)
    assert hits[0].file == "guides/calibration.md"
    components = ix.components
    # The build wrote the model's ONNX recipe: questions skip torch and sentence-transformers.
    assert type(components.query_embedder).__name__ == "OnnxEmbedder"
    assert not components.embedder.loaded  # a query process loads one model

    # float32, as onnxruntime computes; questions in the CPU's bfloat16 score within ~1e-3.
    torch_only = Indexer.from_config(
        built_sample,
        {"retrieval.mode": "vector", "embedding.query_backend": "torch", "embedding.dtype": "float32"},
    )
    assert torch_only.components.query_embedder is torch_only.components.embedder
    same = torch_only.retrieve("rain gauge calibration", top_k=2)
    assert [h.chunk_id for h in same] == [h.chunk_id for h in hits]
    assert same[0].score == pytest.approx(hits[0].score, abs=1e-5)


def test_a_question_vector_from_elsewhere_is_taken_once_and_a_missing_one_is_computed(
    built_sample: Path,
) -> None:
    """The cold query's children (query/prefetch.py): retrieval takes the vector another process
    computed; where that process gave none (it failed, it was killed), the question is embedded
    here, as without it."""
    embedder = Indexer.from_config(built_sample).components.query_embedder
    assert type(embedder).__name__ == "OnnxEmbedder"
    question = "rain gauge calibration"
    own = embedder.embed_query(question)
    elsewhere = [0.5] * len(own)

    embedder.expect_vector(question, lambda: elsewhere)
    assert embedder.embed_query("another question") != elsewhere  # only for its own question
    assert embedder.embed_query(question) == elsewhere
    assert embedder.embed_query(question) == own  # used once

    embedder.expect_vector(question, lambda: None)
    assert embedder.embed_query(question) == own


def test_eval_indexes_are_shared_by_backends_of_one_vector_space(make_config, exported: Path) -> None:
    from indexer.eval.datasets import Dataset
    from indexer.eval.indexes import index_key

    dataset = Dataset(name="set", kind="beir", path=exported, questions=[], corpus_path=exported / "c.jsonl")
    keys = {}
    for name, embedding in {
        "torch": {},
        "onnx": {"backend": "onnx", "backend_file": str(exported / "minilm.onnx")},
        "int8": {
            "backend": "onnx",
            "quantization": "int8",
            "backend_file": str(exported / "minilm-int8.onnx"),
        },
    }.items():
        ix = Indexer.from_config(make_config(embedding=embedding))
        keys[name] = index_key(dataset, ix.config, ix.components.embedder.identity.record())
    assert keys["torch"] == keys["onnx"] != keys["int8"]
