"""A build that embeds in a process of its own (``build.encoder_process``, on CUDA by default, there
handed token ids by the chunking workers): the same index as one that embeds texts in the build's
process, with the model loaded only there, and a model that will not load fails the build as clearly
as it does in-process."""

from __future__ import annotations

import numpy as np
import pytest

from indexer import Indexer
from indexer.errors import ModelError
from tests.conftest import SAMPLE_DIR, run_cli, write_config
from tests.support.stored import stored_chunks

QUESTIONS = ["How often is the desiccant replaced?", "What does error E-214 mean?", "battery voltage"]


def _index(folder, encoder_process: bool):
    folder.mkdir()
    config = write_config(
        folder,
        SAMPLE_DIR,
        llm={"provider": "none"},
        # A process of its own is handed token ids, as on a GPU, where both are the default.
        # onnx_max_chunks 0: both builds on torch, though the sample is a small build.
        build={
            "encoder_process": encoder_process,
            "tokenize_in_workers": encoder_process,
            "onnx_max_chunks": 0,
        },
        # Calls of 16 chunks: several wait queued in the encoder process. float32: the two builds
        # group chunks into calls as they come, and bfloat16 vectors differ with the padding.
        embedding={"batch_size": 2, "dtype": "float32"},
    )
    ix = Indexer.from_config(config)
    summary = ix.build()
    return config, ix, summary


@pytest.mark.slow
def test_an_encoder_process_builds_the_same_index_without_loading_the_model_in_the_build(tmp_path) -> None:
    here_config, here, here_summary = _index(tmp_path / "here", False)
    apart_config, apart, apart_summary = _index(tmp_path / "apart", True)
    assert not apart.components.embedder.loaded  # the build process never loaded it
    assert apart_summary.chunks == here_summary.chunks and apart_summary.stages["encode"] > 0
    texts = {h.id: h.text for h in stored_chunks(here)}
    assert {h.id: h.text for h in stored_chunks(apart)} == texts
    vector = {"retrieval.mode": "vector"}
    for question in QUESTIONS:
        want = Indexer.from_config(here_config, vector).retrieve(question, top_k=5)
        got = Indexer.from_config(apart_config, vector).retrieve(question, top_k=5)
        assert [s.chunk_id for s in got] == [s.chunk_id for s in want]
        np.testing.assert_allclose([s.score for s in got], [s.score for s in want], atol=1e-5)


@pytest.mark.slow
def test_the_next_build_of_the_process_reuses_the_idle_encoder_process(tmp_path) -> None:
    from indexer.ingestion import encoders

    _, ix, _ = _index(tmp_path / "apart", True)
    key = ix.components.config.embedding.model_dump_json()
    first = encoders._IDLE[key]
    assert first.usable() and first.facts().passage_tokenizer is not None  # the workers made token ids
    summary = ix.build(rebuild=True)
    assert summary.chunks_embedded == summary.chunks > 0
    assert encoders._IDLE[key] is first and first.usable()  # no second model load
    assert not ix.components.embedder.loaded


@pytest.mark.slow
def test_a_cli_build_ends_its_idle_encoder_process_cleanly(tmp_path) -> None:
    config = write_config(tmp_path, SAMPLE_DIR, llm={"provider": "none"}, build={"encoder_process": True})
    result = run_cli("build", str(config))
    assert result.returncode == 0, result.stderr
    assert "leaked" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_model_that_will_not_load_in_the_encoder_process_fails_the_build_clearly(tmp_path) -> None:
    config = write_config(
        tmp_path,
        SAMPLE_DIR,
        llm={"provider": "none"},
        build={"encoder_process": True},
        embedding={"model": str(tmp_path / "no-such-model")},
    )
    ix = Indexer.from_config(config)
    with pytest.raises(ModelError, match=r"embedding\.model"):
        ix.build()
    from indexer.ingestion.encoders import _IDLE

    assert ix.components.config.embedding.model_dump_json() not in _IDLE  # not kept for the next build
    result = run_cli("build", str(config))
    assert result.returncode != 0 and "embedding.model" in result.stderr
    assert "Traceback" not in result.stderr


def test_doctor_says_where_builds_embed_and_tokenize_and_why(make_config) -> None:
    from indexer.config.loader import load_config
    from indexer.doctor import diagnose

    def rows(**embedding: str) -> dict[str, str]:
        config = load_config(make_config(llm={"provider": "none"}, embedding=embedding))
        return dict(dict(diagnose(config).sections)["Embedding"])

    cpu, cuda = rows(device="cpu"), rows(device="cuda")
    assert cpu["builds embed in"].startswith("the build process (build.encoder_process auto: on a CPU")
    assert cuda["builds embed in"].startswith("a process of its own (build.encoder_process auto: on CUDA")
    assert cpu["chunks tokenized by"].startswith("the encoder (build.tokenize_in_workers auto: on a CPU")
    assert cuda["chunks tokenized by"].startswith(
        "the chunking workers (build.tokenize_in_workers auto: on a GPU"
    )
    import torch

    assert cpu["build forward passes"] == f"{torch.get_num_threads()} at once, on one core each"
    assert "build forward passes" not in cuda
    onnx = rows(device="cpu", backend="onnx")
    assert onnx["build forward passes"] == "one at a time, on onnxruntime's own threads"
