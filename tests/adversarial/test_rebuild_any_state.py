"""Issue 10, item 10: ``--rebuild`` works from any state of the index folder (a damaged manifest
no longer leads to a dead end), and touches only what is the index's own."""

from __future__ import annotations

import json
from pathlib import Path

import chromadb
import pytest
from chromadb.config import Settings

from tests.adversarial.helpers import assert_one_paragraph_error, cli, small_config, write_docs
from tests.support.index_probe import probe

QUESTION = "How often is the silica gel desiccant replaced?"


@pytest.mark.parametrize(
    "damage",
    [
        b'{"format_version": 2, "embedding": {"name": "x"}, "files": {',  # cut short
        b'{"format_version": 2, "files": []}',  # valid JSON, not a manifest
        b"\xff\xfe\x00garbage",  # not text at all
    ],
    ids=["cut-short", "not-a-manifest", "binary"],
)
def test_rebuild_replaces_a_damaged_manifest_and_keeps_foreign_collections(
    tmp_path: Path, damage: bytes
) -> None:
    config = small_config(tmp_path / "cfg", write_docs(tmp_path / "docs"))
    storage = tmp_path / "cfg" / "storage"
    assert cli("build", str(config)).returncode == 0
    assert cli("build", str(config), "--rebuild").returncode == 0  # now generation 1: test-g1
    client = chromadb.PersistentClient(path=str(storage), settings=Settings(anonymized_telemetry=False))
    client.get_or_create_collection("someone-else").add(ids=["x"], embeddings=[[0.1, 0.2]])

    (storage / "indexer-manifest.json").write_bytes(damage)
    assert_one_paragraph_error(cli("status", str(config)), "--rebuild")
    assert_one_paragraph_error(cli("build", str(config)), "--rebuild")

    rebuilt = cli("build", str(config), "--rebuild", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.json()["documents"] == 3
    manifest = json.loads((storage / "indexer-manifest.json").read_text())
    assert manifest["collection"] == "test-g2"  # above every generation found
    assert (storage / "indexer-manifest.json.damaged").read_bytes() == damage
    # The damaged index's generations (test, test-g1) are dropped; the foreign collection stays.
    assert probe(storage, "test")["collections"] == ["someone-else", "test-g2"]

    assert cli("status", str(config), "--json").json()["up_to_date"]
    sources = cli("query", str(config), QUESTION, "--json").json()["sources"]
    assert sources[0]["file"] == "mast.txt"


def test_rebuild_sets_aside_a_damaged_chroma_database(tmp_path: Path) -> None:
    config = small_config(tmp_path / "cfg", write_docs(tmp_path / "docs"))
    storage = tmp_path / "cfg" / "storage"
    assert cli("build", str(config)).returncode == 0
    damage = b"\x00not a database\x00" * 4096
    (storage / "chroma.sqlite3").write_bytes(damage)

    for command in (["status"], ["build"], ["query", QUESTION]):
        assert_one_paragraph_error(cli(*command[:1], str(config), *command[1:]), "--rebuild")

    rebuilt = cli("build", str(config), "--rebuild", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.json()["documents"] == 3
    (kept,) = storage.glob("damaged-chroma-*")
    assert (kept / "chroma.sqlite3").read_bytes() == damage  # moved aside, never deleted
    assert cli("status", str(config), "--json").json()["up_to_date"]
    sources = cli("query", str(config), QUESTION, "--json").json()["sources"]
    assert sources[0]["file"] == "mast.txt"
