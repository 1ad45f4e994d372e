"""Incremental sync, the manifest, staged rebuilds and committed-only search, through the Python
API on the real components (MiniLM, embedded Chroma)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer import Indexer
from indexer.errors import DataError, IndexMismatchError, StoreError
from indexer.index.lock import IndexBusyError, writer_lock
from indexer.index.store import Chunk


def _stored(ix: Indexer) -> list[tuple[str, str, str]]:
    """Every chunk in the live collection, committed or not: (id, doc_id, file_hash)."""
    store = ix.index.chunk_store(create=False)
    assert store is not None
    return sorted(store.versions())


def _assert_store_matches_manifest(ix: Indexer) -> None:
    manifest = ix.index.manifest_file.load()
    assert manifest is not None and not manifest.pending
    stored = _stored(ix)
    assert len(stored) == manifest.chunk_count
    expected = sorted(
        (f"{doc}::{rec.hash[:12]}::{i}", doc, rec.hash)
        for doc, rec in manifest.files.items()
        for i in range(rec.chunks)
    )
    assert stored == expected


@pytest.mark.slow
def test_add_change_delete_rename_and_unchanged(sample_copy: Path, make_config) -> None:
    ix = Indexer.from_config(make_config(sample_copy))
    first = ix.build()
    assert (first.added, first.updated, first.deleted, first.unchanged) == (10, 0, 0, 0)
    _assert_store_matches_manifest(ix)
    before = {doc: rec.hash for doc, rec in ix.index.manifest_file.load().files.items()}

    unchanged = ix.build()
    assert (unchanged.added, unchanged.updated, unchanged.deleted, unchanged.unchanged) == (0, 0, 0, 10)
    assert unchanged.chunks_embedded == 0

    (sample_copy / "guides" / "calibration.md").rename(sample_copy / "guides" / "calibrating.md")
    (sample_copy / "glossary.txt").write_text("Zephyr bracket: the only part painted teal.\n")
    (sample_copy / "CHANGELOG.md").unlink()
    (sample_copy / "winter.md").write_text("# Winter mode\n\n## Heater\nThe heater runs below -20 C.\n")
    changed = ix.build()
    assert changed.changes == {
        "added": ["guides/calibrating.md", "winter.md"],
        "updated": ["glossary.txt"],
        "deleted": ["CHANGELOG.md", "guides/calibration.md"],
    }
    assert (changed.added, changed.updated, changed.deleted, changed.unchanged) == (2, 1, 2, 7)
    _assert_store_matches_manifest(ix)
    docs = {doc for _, doc, _ in _stored(ix)}
    assert "CHANGELOG.md" not in docs and "guides/calibration.md" not in docs
    assert all(h != before["glossary.txt"] for _, doc, h in _stored(ix) if doc == "glossary.txt")
    top = ix.retrieve("Which part is painted teal?", top_k=1)[0]
    assert top.file == "glossary.txt" and "teal" in top.text
    heater = ix.retrieve("When does the heater run?", top_k=1)[0]
    assert heater.file == "winter.md" and heater.metadata["title"] == "Winter mode"
    # The chunk starts under "# Winter mode", the title again: no section, so no "Winter mode,
    # Winter mode" label (issue 28).
    assert "section" not in heater.metadata


@pytest.mark.slow
def test_dry_run_and_status_report_changes_and_touch_nothing(sample_copy: Path, make_config) -> None:
    ix = Indexer.from_config(make_config(sample_copy))
    ix.build()
    status = ix.status()
    assert status.up_to_date and status.documents == 10 and status.chunks_in_store == status.chunks
    manifest_path = ix.index.manifest_file.path
    saved = manifest_path.read_bytes()
    stored = _stored(ix)

    (sample_copy / "glossary.txt").write_text("Changed.\n")
    (sample_copy / "hardware.md").unlink()
    (sample_copy / "new.txt").write_text("A new note about the mast.\n")
    plan = ix.build(dry_run=True)
    assert plan.dry_run and plan.chunks_embedded == 0
    assert plan.changes == {"added": ["new.txt"], "updated": ["glossary.txt"], "deleted": ["hardware.md"]}
    status = ix.status()
    assert (status.new, status.changed, status.deleted) == (["new.txt"], ["glossary.txt"], ["hardware.md"])
    assert not status.up_to_date and status.compatible and status.unchanged == 8
    assert manifest_path.read_bytes() == saved and _stored(ix) == stored

    ix.build()
    assert ix.status().up_to_date


def test_manifest_describes_the_index(built_sample: Path) -> None:
    manifest = json.loads((built_sample.parent / "storage" / "indexer-manifest.json").read_text())
    embedding = manifest["embedding"]
    assert embedding["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert len(embedding["fingerprint"]) == 16 and embedding["dimension"] == 384
    assert embedding["normalize"] is True and embedding["query_prefix"] == embedding["passage_prefix"] == ""
    assert manifest["chunking"] == {"chunk_size": 256, "chunk_overlap": 32}
    assert {"input_dir", "recursive", "required_exts", "exclude", "pipeline_version"} <= manifest[
        "loader"
    ].keys()
    assert len(manifest["config_hash"]) == 16
    assert {"indexer", "chromadb", "sentence-transformers", "torch", "llama-index-core"} <= manifest[
        "versions"
    ].keys()
    assert manifest["documents"] == 10 and manifest["chunks"] == sum(
        f["chunks"] for f in manifest["files"].values()
    )
    assert manifest["created_at"] and manifest["updated_at"] and manifest["build_seconds"] > 0
    assert manifest["last_build"]["added"] == 10 and manifest["last_build"]["finished_at"]
    assert manifest["pending"] == [] and manifest["collection"] == "test"


@pytest.mark.slow
def test_mismatched_model_is_refused_naming_both_values(sample_copy: Path, make_config) -> None:
    config = make_config(sample_copy)
    ix = Indexer.from_config(config)
    ix.build()
    path = ix.index.manifest_file.path
    manifest = json.loads(path.read_text())
    manifest["embedding"]["fingerprint"] = "0123456789abcdef"  # as if built by other weights
    manifest["embedding"]["dimension"] = 768
    path.write_text(json.dumps(manifest))
    pattern = r"(?s)fingerprint: index has '0123456789abcdef', config gives '[0-9a-f]{16}'.*--rebuild"
    with pytest.raises(IndexMismatchError, match=pattern):
        Indexer.from_config(config).retrieve("anything")
    with pytest.raises(IndexMismatchError, match=r"dimension: index has 768, config gives 384"):
        Indexer.from_config(config).retrieve("anything")
    (sample_copy / "glossary.txt").write_text("Changed.\n")
    with pytest.raises(IndexMismatchError, match="fingerprint"):
        Indexer.from_config(config).build()
    assert json.loads(path.read_text()) == manifest  # refused before any work
    Indexer.from_config(config).build(rebuild=True)
    top = Indexer.from_config(config).retrieve("How is the rain gauge calibrated?", top_k=3)
    assert "guides/calibration.md" in [s.file for s in top]


@pytest.mark.slow
def test_rebuild_keeps_the_old_index_until_the_new_one_is_complete(sample_copy: Path, make_config) -> None:
    config = make_config(sample_copy)
    ix = Indexer.from_config(config)
    ix.build()
    before = [s.chunk_id for s in ix.retrieve("rain gauge calibration")]
    # A file that is read last and fails under --strict stops the rebuild midway.
    (sample_copy / "zz_broken.pdf").write_bytes(b"%PDF-1.4 this is not really a PDF")
    rechunked = Indexer.from_config(config, {"chunking.chunk_size": 128})
    with pytest.raises(DataError, match=r"--strict: cannot index zz_broken\.pdf"):
        rechunked.build(rebuild=True, strict=True)
    again = Indexer.from_config(config)
    assert [s.chunk_id for s in again.retrieve("rain gauge calibration")] == before
    assert again.index.manifest_file.load().chunking["chunk_size"] == 256

    summary = rechunked.build(rebuild=True)
    assert summary.rebuild and summary.added == 10 and summary.skipped[0]["file"] == "zz_broken.pdf"
    manifest = rechunked.index.manifest_file.load()
    assert manifest.collection == "test-g1" and manifest.generation == 1 and manifest.retired == []
    from indexer.index.chroma import collection_names

    assert collection_names(rechunked.index.client) == {"test-g1"}  # old and partial gone
    fresh = Indexer.from_config(config, {"chunking.chunk_size": 128})
    assert fresh.retrieve("rain gauge calibration")[0].file == "guides/calibration.md"
    _assert_store_matches_manifest(fresh)


@pytest.mark.slow
def test_search_shows_only_committed_chunks_and_the_next_build_sweeps_the_rest(
    sample_copy: Path, make_config
) -> None:
    ix = Indexer.from_config(make_config(sample_copy))
    ix.build()
    question = "The zephyr bracket is painted teal"
    store = ix.index.chunk_store(create=False)
    assert store is not None
    vector = ix.components.embedder.embed([question])[0].tolist()
    # What a build killed between writing and committing leaves: a new version of a known file
    # and a file the manifest never heard of, both matching the question best.
    strays = [
        Chunk("glossary.txt::ffffffffffff::0", question, {"doc_id": "glossary.txt", "file_hash": "f" * 32}),
        Chunk("ghost.txt::eeeeeeeeeeee::0", question, {"doc_id": "ghost.txt", "file_hash": "e" * 32}),
    ]
    store.add(strays, [vector, vector])

    sources = ix.retrieve(question, top_k=4)
    assert len(sources) == 4
    assert all("ffffffffffff" not in s.chunk_id and s.file != "ghost.txt" for s in sources)
    status = ix.status()
    assert status.interrupted and status.chunks_in_store == status.chunks + 2

    summary = ix.build()
    assert summary.chunks_embedded == 0 and summary.unchanged == 10
    _assert_store_matches_manifest(ix)


def test_a_second_writer_fails_at_once(sample_copy: Path, make_config) -> None:
    ix = Indexer.from_config(make_config(sample_copy))
    persist = ix.config.vector_store.persist_dir
    assert persist is not None
    with (
        writer_lock(persist),
        pytest.raises(IndexBusyError, match=r"another build .* only one build may write"),
    ):
        ix.build()
    assert ix.index.manifest_file.load() is None  # nothing was written


@pytest.mark.slow
def test_a_foreign_collection_is_not_adopted(sample_copy: Path, make_config) -> None:
    ix = Indexer.from_config(make_config(sample_copy))
    store = ix.index.chunk_store(create=True)
    assert store is not None
    store.add([Chunk("someone-else", "their text", {"owner": "another tool"})], [[0.1] * 384])
    with pytest.raises(StoreError, match=r"(?s)no indexer manifest.*--rebuild"):
        ix.build()
    assert ix.build(rebuild=True).added == 10
