"""Crash safety, the writer lock and queries during a build, on real subprocesses.

A build is SIGKILLed midway (a real ``python -m indexer build``), the index it leaves must answer
queries from committed chunks only, and the next build must end exactly where a clean build of the
same folder ends: the same chunk ids, no duplicate, no orphan.

Only the processes that are killed, stall or hold the lock are subprocesses; the builds, queries
and status reads around them run the CLI in this process (``cli``), each opening the index after
the last outside write to it, so that it reads what is on disk (Chroma caches an opened database
per process). The raw collection is read by a fresh process (``probe``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.helpers import cli
from tests.conftest import ROOT, run_cli, write_config
from tests.support.corpus import write_corpus
from tests.support.index_probe import probe
from tests.support.processes import descendants, read_manifest

# Small chunks and batches: many commits in a few seconds, so a kill lands between two of them.
SMALL = {"chunking": {"chunk_size": 64, "chunk_overlap": 8}, "embedding": {"batch_size": 2}}


def _config(folder: Path, docs: Path, **sections: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(folder, docs, llm={"provider": "none"}, **SMALL, **sections)


def _clean_build_ids(tmp_path: Path, docs: Path) -> list[str]:
    config = _config(tmp_path / "clean", docs)
    result = cli("build", str(config), "--json")
    assert result.returncode == 0, result.stderr
    return sorted(probe(config.parent / "storage", "test")["ids"])


def _assert_no_duplicate_or_orphan(config: Path) -> list[str]:
    raw = probe(config.parent / "storage", "test")
    manifest = read_manifest(config)
    assert manifest is not None and not manifest["pending"]
    committed = {doc: rec["hash"] for doc, rec in manifest["files"].items()}
    assert len(raw["ids"]) == len(set(raw["ids"])) == sum(r["chunks"] for r in manifest["files"].values())
    assert all(committed.get(doc) == digest for doc, digest in raw["versions"])
    return sorted(raw["ids"])


def _retrieve(config: Path, question: str, top_k: int) -> list[dict]:
    result = cli("query", str(config), question, "--retrieve-only", "--json", "--top-k", str(top_k))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["sources"]


@pytest.mark.slow
@pytest.mark.parametrize("encoder_process", [False, True], ids=["encoder-in-build", "encoder-process"])
def test_sigkilled_build_leaves_a_queryable_index_and_the_next_build_completes(
    tmp_path: Path, encoder_process: bool
) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs, files=40, sentences=12)
    config = _config(tmp_path / "index", docs, build={"encoder_process": encoder_process})
    build = subprocess.Popen(
        [sys.executable, "-m", "indexer", "build", str(config), "--json"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while True:  # kill at the first commit: the build is then midway, with chunks in flight
            manifest = read_manifest(config)
            if manifest and manifest["files"]:
                break
            assert build.poll() is None, "the build ended before it could be killed: enlarge the corpus"
            assert time.monotonic() < deadline, "the build made no progress"
            time.sleep(0.02)
        helpers = descendants(build.pid)  # its chunking workers, encoder process and their fork server
    finally:
        build.send_signal(signal.SIGKILL)
        build.wait()
    assert build.returncode == -signal.SIGKILL
    assert helpers, "the build ran no chunking workers: nothing to check below"
    deadline = time.monotonic() + 10
    while [p for p in helpers if Path(f"/proc/{p}").exists()] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in helpers if Path(f"/proc/{p}").exists()], "a killed build left processes running"

    # The killed build left the last committed index: queries see committed chunks only.
    manifest = read_manifest(config)
    assert manifest is not None and 0 < len(manifest["files"]) < 40
    sources = _retrieve(config, "barometer pressure relay", 8)
    assert len(sources) == 8
    for source in sources:
        assert manifest["files"][source["doc_id"]]["hash"][:12] in source["chunk_id"]

    # Files change before the next build, including one the killed build never committed.
    uncommitted = sorted(
        p for p in docs.rglob("*.txt") if p.relative_to(docs).as_posix() not in manifest["files"]
    )
    uncommitted[0].unlink()  # possibly written by the killed build, never committed
    committed_file = docs / sorted(manifest["files"])[0]
    committed_file.write_text(committed_file.read_text() + "An added line about the beacon.\n")

    again = cli("build", str(config), "--json")  # the dead build's lock is gone with it
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["documents"] == 39 and summary["updated"] == 1
    assert _assert_no_duplicate_or_orphan(config) == _clean_build_ids(tmp_path, docs)


# A fault injected into a real build: it stalls right after writing its second batch of chunks,
# before committing them (as a build on a slow disk would), so that a second build and a query
# certainly meet it running, with uncommitted chunks in the collection.
STALL_AFTER_SECOND_WRITE = textwrap.dedent(
    """
    import sys, time
    from indexer import Indexer
    from indexer.index import store

    real_add = store.ChunkStore.add
    writes = []

    def add_then_stall(self, chunks, embeddings=None):
        real_add(self, chunks, embeddings)
        writes.append(len(chunks))
        if len(writes) == 2:
            print("stalled", flush=True)
            time.sleep(600)

    store.ChunkStore.add = add_then_stall
    Indexer.from_config(sys.argv[1]).build()
    """
)


@pytest.mark.slow
def test_one_writer_at_a_time_and_queries_during_a_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs, files=24, sentences=12)
    config = _config(tmp_path / "index", docs)
    stalled = subprocess.Popen(
        [sys.executable, "-c", STALL_AFTER_SECOND_WRITE, str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert stalled.stdout is not None and stalled.stdout.readline().strip() == "stalled"
        second = cli("build", str(config))
        assert second.returncode == 2, second.stderr
        assert "another build is writing" in second.stderr and f"pid {stalled.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        status = json.loads(cli("status", str(config), "--json").stdout)
        assert status["built"] and 0 < status["documents"] < 24
        assert status["chunks_in_store"] > status["chunks"]  # the second batch, not committed
        sources = _retrieve(config, "anemometer calibration reading", 5)
        manifest = read_manifest(config)
        assert manifest is not None and len(sources) == 5
        for source in sources:  # committed chunks only, at their committed version
            assert manifest["files"][source["doc_id"]]["hash"][:12] in source["chunk_id"]
    finally:
        stalled.send_signal(signal.SIGKILL)
        stalled.wait()
    again = cli("build", str(config), "--json")  # the killed writer's lock is free
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["documents"] == 24
    _assert_no_duplicate_or_orphan(config)


# A fault injected into a real build: the process dies right after the first chunk write, before
# the manifest commits it. Named for what it is; everything else is the real pipeline.
CRASH_AFTER_FIRST_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    from indexer import Indexer
    from indexer.index import store

    real_add = store.ChunkStore.add

    def add_then_crash(self, chunks, embeddings=None):
        real_add(self, chunks, embeddings)
        os.kill(os.getpid(), signal.SIGKILL)

    store.ChunkStore.add = add_then_crash
    Indexer.from_config(sys.argv[1]).build()
    """
)


@pytest.mark.slow
def test_chunks_written_but_not_committed_never_show_and_never_stay(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs, files=6, sentences=20)
    config = _config(tmp_path / "index", docs)
    # In a process of its own: this one must first open the index after the crash below wrote to it.
    assert run_cli("build", str(config)).returncode == 0
    before = _retrieve(config, "solar panel battery voltage", 5)

    changed = docs / "part0" / "note_0000.txt"
    changed.write_text("The zeppelin hangar stores the spare teal anemometer cups.\n")
    new = docs / "part1" / "extra.txt"
    new.write_text("The zeppelin hangar is also where the orphan test file lives.\n")
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_FIRST_WRITE, str(config)], cwd=ROOT, timeout=300
    )
    assert crashed.returncode == -signal.SIGKILL

    manifest = read_manifest(config)
    assert manifest is not None
    assert set(manifest["pending"]) == {"part0/note_0000.txt", "part1/extra.txt"}
    assert "part1/extra.txt" not in manifest["files"]
    raw = probe(config.parent / "storage", "test")
    assert len(raw["ids"]) > sum(r["chunks"] for r in manifest["files"].values())  # uncommitted chunks exist
    # ... but queries do not see them: the old index answers, unchanged.
    assert _retrieve(config, "solar panel battery voltage", 5) == before
    assert all("zeppelin" not in s["text"] for s in _retrieve(config, "zeppelin hangar", 10))

    status = json.loads(cli("status", str(config), "--json").stdout)
    assert status["interrupted"] and status["changed"] == ["part0/note_0000.txt"]

    new.unlink()  # the file the crashed build wrote but never committed goes away
    again = cli("build", str(config), "--json")
    assert again.returncode == 0, again.stderr
    assert _assert_no_duplicate_or_orphan(config) == _clean_build_ids(tmp_path, docs)
    top = _retrieve(config, "zeppelin hangar", 1)[0]
    assert top["doc_id"] == "part0/note_0000.txt" and "zeppelin" in top["text"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    from indexer.index.lock import OWNER_FILE, IndexBusyError, writer_lock

    folder = tmp_path / "storage"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\nfrom indexer.index.lock import writer_lock\n"
            "with writer_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(600)\n",
            str(folder),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexBusyError, match=rf"another build .*pid {holder.pid}"), writer_lock(folder):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (folder / OWNER_FILE).exists()  # the dead holder could not clean up ...
    with writer_lock(folder):  # ... yet its lock is free
        assert json.loads((folder / OWNER_FILE).read_text())["pid"] == os.getpid()
    assert not (folder / OWNER_FILE).exists()
