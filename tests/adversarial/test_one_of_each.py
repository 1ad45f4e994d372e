"""One of each (issue 32, item 5): ``doctor`` loads the model through the one loader a query uses,
so it reports a model problem in the same words; a record sync plans like a file build, and one
with nothing to embed never loads the embedding model."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.components import Components
from indexer.components.llm_loader import load_llm
from indexer.config import load_config
from indexer.doctor import diagnose
from indexer.errors import ModelError
from indexer.index.index import Index
from indexer.ingestion.records import TextRecord, index_records
from tests.adversarial.helpers import small_config, write_docs

RECORDS = [
    TextRecord("101", "The rain gauge bucket tips once for every 0.2 mm of rain.", "Rain gauge"),
    TextRecord("102", "Replace the silica gel desiccant pack every six months."),
]


class fault_components_without_model(Components):
    """Components whose embedding model cannot be loaded: any use of it fails the test."""

    @property
    def embedder(self):  # type: ignore[override]
        raise AssertionError("the embedding model was loaded")


@pytest.mark.parametrize("model", ["absent.gguf", "bogus.gguf"])
def test_doctor_reports_a_model_problem_as_the_loader_words_it(tmp_path: Path, model: str) -> None:
    (tmp_path / "bogus.gguf").write_bytes(b"not a model" * 100)
    docs = write_docs(tmp_path / "docs")
    config = load_config(small_config(tmp_path, docs, llm={"model_path": str(tmp_path / model)}))
    with pytest.raises(ModelError) as raised:
        load_llm(config.llm.model_copy(update={"required": True}))
    assert str(raised.value) in diagnose(config).problems


def test_a_record_sync_with_nothing_to_embed_loads_no_model(tmp_path: Path) -> None:
    config = load_config(small_config(tmp_path, write_docs(tmp_path / "docs")))
    first = index_records(RECORDS, Components(config), Index(config.vector_store), source="s")
    assert (first.added, first.documents) == (2, 2) and first.chunks_embedded == first.chunks

    without_model = fault_components_without_model(config)
    again = index_records(RECORDS, without_model, Index(config.vector_store), source="s")
    assert (again.unchanged, again.added, again.updated, again.chunks_embedded) == (2, 0, 0, 0)
    fewer = index_records(RECORDS[:1], without_model, Index(config.vector_store), source="s")
    assert (fewer.deleted, fewer.unchanged, fewer.documents) == (1, 1, 1)

    manifest = Index(config.vector_store).manifest_file.load()
    assert manifest is not None and manifest.embedding["dimension"] == 384  # recorded with the vectors
