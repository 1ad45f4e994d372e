"""Indexing records (a BEIR corpus) with the real embedder and Chroma: one document per record id,
incremental sync, and the manifest's guard against mixing vector spaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.components import Components
from indexer.config import load_config
from indexer.errors import DataError, IndexMismatchError
from indexer.index.index import Index
from indexer.ingestion.records import TextRecord, index_records
from tests.conftest import SAMPLE_DIR, write_config

RECORDS = [
    TextRecord("101", "The rain gauge bucket tips once for every 0.2 mm of rain.", "Rain gauge"),
    TextRecord("102", "Replace the silica gel desiccant pack every six months."),
    TextRecord("103", "The anemometer connects to J4 on the mast board. " * 40),  # several chunks
]


def index_of(components: Components) -> Index:
    return Index(components.config.vector_store)


def components_for(tmp_path: Path, **sections: object) -> Components:
    config = write_config(tmp_path, SAMPLE_DIR, **sections)
    return Components(load_config(config))


def test_records_become_documents_keyed_by_their_ids(tmp_path: Path) -> None:
    components = components_for(tmp_path, chunking={"chunk_size": 64, "chunk_overlap": 8})
    summary = index_records(RECORDS, components, index_of(components), source="test records")
    assert (summary.documents, summary.added, summary.deleted) == (3, 3, 0)
    assert summary.chunks == summary.chunks_embedded > 3  # record 103 is split

    store = index_of(components).chunk_store(create=False)
    assert store is not None and store.count() == summary.chunks
    query = components.embedder.embed_query("how much rain per bucket tip")
    best = store.search(query, 1)[0]
    assert best.metadata["doc_id"] == "101"
    assert best.metadata["title"] == "Rain gauge" and best.text.startswith("Rain gauge\n")

    manifest = index_of(components).manifest_file.load()
    assert manifest is not None and set(manifest.files) == {"101", "102", "103"}
    assert manifest.loader == {"records": "test records"}
    assert manifest.files["103"].chunks > 1


def test_sync_embeds_only_what_changed(tmp_path: Path) -> None:
    components = components_for(tmp_path)
    index_records(RECORDS, components, index_of(components), source="s")
    again = index_records(RECORDS, components, index_of(components), source="s")
    assert (again.unchanged, again.chunks_embedded) == (3, 0)

    changed = [RECORDS[0], TextRecord("102", "Replace the desiccant every three months.")]
    summary = index_records(changed, components, index_of(components), source="s")
    assert (summary.updated, summary.deleted, summary.unchanged, summary.chunks_embedded) == (1, 1, 1, 1)
    store = index_of(components).chunk_store(create=False)
    assert store is not None
    texts = [h.text for h in store.search(components.embedder.embed_query("desiccant"), 10)]
    assert texts.count("Replace the desiccant every three months.") == 1
    assert not any("six months" in t or "J4" in t for t in texts)  # old version and deleted record gone
    assert store.count() == summary.chunks == 2


def test_duplicate_ids_and_mismatched_settings_are_refused(tmp_path: Path) -> None:
    components = components_for(tmp_path)
    with pytest.raises(DataError, match="record id '101' appears twice"):
        index_records([RECORDS[0], RECORDS[0]], components, index_of(components), source="corpus.jsonl")
    index_records(RECORDS, components, index_of(components), source="s")
    other = Components(load_config(tmp_path / "config.yaml", {"chunking.chunk_size": 128}))
    with pytest.raises(IndexMismatchError, match=r"chunking\.chunk_size: index has 256, config gives 128"):
        index_records(RECORDS, other, index_of(other), source="s")
