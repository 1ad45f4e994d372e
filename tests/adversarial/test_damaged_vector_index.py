"""Issue 30, item B (the residue): if Chroma's vector segment is damaged anyway (its HNSW files
half written when another program filled the disk between indexer's room check and Chroma's
write, or changed by hand), ``status`` says so without a traceback, a vector query refuses in one
paragraph while keyword search answers, and a plain ``indexer build`` builds the index again into
a new collection (Chroma keeps a vector only in those files once they are saved, so there is
nothing to mend them from).

The damage is made for real: a collection whose HNSW segment has been saved (1,000 writes and
more) gets its ``index_metadata.pickle`` cut short, as a write that ran out of room leaves it."""

from __future__ import annotations

import random
from pathlib import Path

from tests.adversarial.helpers import assert_one_paragraph_error, cli, small_config, write_docs

QUESTION = "How often is the silica gel desiccant replaced?"


def _save_a_vector_segment(storage: Path) -> Path:
    """Write enough stray records for Chroma to save its HNSW files (sync_threshold 1,000); the
    manifest does not name them, so queries never show them and the next build sweeps them."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(storage), settings=Settings(anonymized_telemetry=False))
    collection = client.get_collection("test")
    rnd = random.Random(30)
    for start in range(0, 1200, 300):
        ids = [f"stray-{i}" for i in range(start, start + 300)]
        collection.upsert(
            ids=ids,
            embeddings=[[rnd.uniform(-1, 1) for _ in range(384)] for _ in ids],
            metadatas=[{"doc_id": "stray", "file_hash": "none"} for _ in ids],
        )
    pickles = list(storage.glob("*/index_metadata.pickle"))
    assert pickles, "Chroma saved no HNSW segment"
    return pickles[0]


def _forget_open_databases(storage: Path) -> None:
    # This process's chromadb keeps the segment it loaded; a new process would read the files.
    from indexer.index.chroma import _forget_system

    _forget_system(storage)


def test_a_damaged_vector_index_is_told_and_a_plain_build_repairs_it(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs)
    assert cli("build", str(config)).returncode == 0
    storage = tmp_path / "cfg" / "storage"
    before = cli("query", str(config), QUESTION, "--json").json()["sources"]

    pickle = _save_a_vector_segment(storage)
    with pickle.open("r+b") as damaged:
        damaged.truncate(pickle.stat().st_size // 2)
    _forget_open_databases(storage)

    status = cli("status", str(config), "--json")
    assert status.returncode == 0, status.stderr
    assert "damaged" in status.json()["store_damaged"] and not status.json()["up_to_date"]
    text = cli("status", str(config))
    assert text.returncode == 0 and "DAMAGED" in text.stdout and "Traceback" not in text.stderr
    assert_one_paragraph_error(
        cli("query", str(config), QUESTION, "--mode", "vector"), "damaged", "indexer build CONFIG"
    )
    keyword = cli("query", str(config), QUESTION, "--mode", "bm25", "--json")
    assert keyword.returncode == 0 and keyword.json()["sources"][0]["text"] == before[0]["text"]

    summary = cli("build", str(config), "--json")
    assert summary.returncode == 0, summary.stderr
    assert summary.json()["documents"] == 3 and summary.json()["rebuild"]
    after = cli("query", str(config), QUESTION, "--mode", "vector", "--json")
    assert after.returncode == 0, after.stderr
    assert [s["text"] for s in after.json()["sources"]] == [s["text"] for s in before]
    assert cli("status", str(config), "--json").json()["up_to_date"]
