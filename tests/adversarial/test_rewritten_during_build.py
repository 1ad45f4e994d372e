"""Issue 30, item A: a file rewritten while a build runs is recorded under the hash of the bytes its
chunks came from, so ``status`` tells the truth and the next build converges to the folder.

Files are flipped atomically (``os.replace``) between two versions by a thread for as long as the
build runs, then left at the first version. Whatever version each chunking worker read, the index
must record it honestly; a second build must then hold exactly the folder's text.
"""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest

from indexer import Indexer
from indexer.index.store import CHUNK_INDEX, DOC_ID, FILE_HASH
from indexer.ingestion.plan import chunk_settings_key
from indexer.ingestion.sources import content_hash
from tests.adversarial.helpers import cli, small_config, write_docs
from tests.support.stored import stored_chunks

FLIPPED = 10
STILL = 40
# Bounds the flipping thread whatever happens to the build.
MAX_FLIPS = 20_000


def _version(name: str, which: str) -> str:
    return f"{which} of {name}: the anemometer on mast {name} reads {which.lower()} values.\n"


def _index_text(config: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Per file, the text of its stored chunks in order, and the hash its chunks were stored under."""
    chunks: dict[str, list[tuple[int, str]]] = {}
    hashes: dict[str, set[str]] = {}
    for hit in stored_chunks(Indexer.from_config(config)):
        doc = hit.metadata[DOC_ID]
        chunks.setdefault(doc, []).append((int(hit.metadata[CHUNK_INDEX]), hit.text))
        hashes.setdefault(doc, set()).add(hit.metadata[FILE_HASH])
    assert all(len(h) == 1 for h in hashes.values()), hashes  # one version of each file
    text = {doc: "".join(t for _, t in sorted(parts)) for doc, parts in chunks.items()}
    return text, {doc: h.pop() for doc, h in hashes.items()}


@pytest.mark.slow
def test_a_file_flipped_during_a_build_is_stored_as_read_and_converges(tmp_path: Path) -> None:
    still = {f"still/{n:02d}.txt": _version(f"{n:02d}", "STILL") for n in range(STILL)}
    docs = write_docs(tmp_path / "docs", still)
    flipped = [docs / f"flip{n}.txt" for n in range(FLIPPED)]
    for path in flipped:
        path.write_text(_version(path.stem, "VERSIONA"))
    config = small_config(tmp_path / "cfg", docs)

    stop = threading.Event()
    flips = 0

    def flip() -> None:
        # Each file at a version of its own, so that whenever the plan hashes them and whenever
        # the workers read them, some are bound to differ.
        nonlocal flips
        choice = random.Random(30)
        while not stop.is_set() and flips < MAX_FLIPS:
            for path in flipped:
                which = choice.choice(("VERSIONA", "VERSIONB"))
                staged = path.with_name(f".{path.name}.new")  # hidden: never listed as a document
                staged.write_text(_version(path.stem, which))
                os.replace(staged, path)
            flips += 1
            stop.wait(0.01)

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    try:
        first = cli("build", str(config), "--json")
    finally:
        stop.set()
        flipper.join(timeout=30)
    assert first.returncode == 0, first.stderr
    assert flips > 1
    for path in flipped:
        path.write_text(_version(path.stem, "VERSIONA"))

    # Whatever version each worker read, the index records the hash of exactly that version.
    ix = Indexer.from_config(config)
    key = chunk_settings_key(ix.config)
    text, hashes = _index_text(config)
    manifest = ix.index.manifest_file.load()
    assert manifest is not None and set(manifest.files) == set(text)
    for doc, stored in text.items():
        name = Path(doc).stem
        versions = [_version(name, which) for which in ("STILL", "VERSIONA", "VERSIONB")]
        read = next(v for v in versions if v.strip() == stored.strip())
        assert hashes[doc] == manifest.files[doc].hash == content_hash(read.encode(), key), doc
    stale = sorted(doc for doc, stored in text.items() if stored.strip() != (docs / doc).read_text().strip())
    status = cli("status", str(config), "--json").json()
    assert status["changed"] == stale and status["up_to_date"] == (not stale)

    second = cli("build", str(config), "--json").json()
    assert second["changes"]["updated"] == stale and second["updated"] == len(stale)
    text, _ = _index_text(config)
    assert {doc: stored.strip() for doc, stored in text.items()} == {
        path.relative_to(docs).as_posix(): path.read_text().strip() for path in docs.rglob("*.txt")
    }
    assert cli("status", str(config), "--json").json()["up_to_date"]
