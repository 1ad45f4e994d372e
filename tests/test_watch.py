"""The folder watcher, driven for real: a ``FolderWatcher`` on a thread over a temporary folder,
changed the way people change folders. Each test ends with the index equal to a clean build of the
folder (same chunk ids, texts and file hashes)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer import Indexer
from indexer.index.lock import writer_lock
from tests.conftest import ROOT, write_config
from tests.support.live_server import free_port, live_server, wait_for_http, wait_until
from tests.support.stored import stored_chunks

pytest.importorskip("watchfiles", reason="needs the watch extra: pip install 'indexer[watch]'")

# Landing "within a few seconds" on a shared 2-core machine, embedding included.
SETTLE_S = 30


def _write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _seed(folder: Path) -> None:
    _write(folder, "pumps.md", "# Pumps\n\nThe bilge pump runs every four hours and is checked weekly.\n")
    _write(folder, "notes/valves.txt", "Valve V3 is replaced after 2000 hours of service.\n")
    _write(folder, "radio.txt", "The radio mast carries a desiccant pack, replaced every six months.\n")


def _committed(ix: Indexer) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """The index as queries see it: each file's hash, and every committed chunk's (id, text)."""
    manifest = ix.index.manifest_file.load()
    assert manifest is not None
    committed = manifest.committed()
    chunks = {(h.id, h.text) for h in stored_chunks(ix) if committed.holds(h)}
    return {doc: rec.hash for doc, rec in manifest.files.items()}, chunks


def _assert_equals_clean_build(ix: Indexer, folder: Path, tmp_path: Path) -> None:
    clean_dir = tmp_path / f"clean-{time.monotonic_ns()}"
    clean_dir.mkdir()
    clean = Indexer.from_config(write_config(clean_dir, folder))
    clean.build()
    watched_files, watched_chunks = _committed(ix)
    clean_files, clean_chunks = _committed(clean)
    assert watched_files == clean_files
    assert len(watched_chunks) == len(clean_chunks)
    assert watched_chunks == clean_chunks


class Running:
    def __init__(self, watcher: Any, stop: threading.Event, thread: threading.Thread) -> None:
        self.watcher = watcher
        self.stop = stop
        self.thread = thread
        self.results: list[Any] = []

    def files(self) -> dict[str, str]:
        manifest = self.watcher.indexer.index.manifest_file.load()
        return {} if manifest is None else {doc: rec.hash for doc, rec in manifest.files.items()}

    def settle(self, done: Any, what: str) -> float:
        """Wait until ``done(files)`` holds and the watcher is quiet; the seconds it took."""
        started = time.monotonic()

        def quiet() -> bool:
            return (
                done(self.files())
                and not self.watcher.syncing
                and time.monotonic() - self.watcher.last_sync_end > 1.5
            )

        if not wait_until(quiet, timeout=SETTLE_S, interval=0.1):
            pytest.fail(f"the watcher did not catch up with {what} in {SETTLE_S} s: {self.results[-3:]}")
        return time.monotonic() - started


@contextmanager
def watching(folder: Path, tmp_path: Path) -> Iterator[Running]:
    from indexer.watch import FolderWatcher

    ix = Indexer.from_config(write_config(tmp_path, folder))
    stop = threading.Event()
    running: Running
    watcher = FolderWatcher(ix, debounce_ms=400, on_sync=lambda r: running.results.append(r))
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    running = Running(watcher, stop, thread)
    thread.start()
    try:
        # The first sync catches up with what is already there.
        if not wait_until(lambda: watcher.syncs >= 1, timeout=SETTLE_S * 2, interval=0.1):
            pytest.fail("the watcher's first sync did not finish")
        yield running
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the watcher did not stop"


@pytest.mark.slow
def test_add_change_delete_and_rename_land(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _seed(folder)
    with watching(folder, tmp_path) as w:
        assert set(w.files()) == {"pumps.md", "notes/valves.txt", "radio.txt"}

        _write(folder, "new.md", "# Anchor\n\nThe anchor chain is inspected for rust every spring.\n")
        (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
        took = w.settle(lambda f: "new.md" in f, "an added file")
        assert took < SETTLE_S
        # A file that cannot be read is skipped and listed, as `indexer build` lists it.
        skipped = [s["file"] for r in w.results if r.summary for s in r.summary.skipped]
        assert "broken.pdf" in skipped
        (folder / "broken.pdf").unlink()

        before = w.files()["pumps.md"]
        _write(folder, "pumps.md", "# Pumps\n\nThe bilge pump now runs every two hours.\n")
        w.settle(lambda f: f.get("pumps.md") not in (None, before), "a changed file")

        (folder / "radio.txt").unlink()
        w.settle(lambda f: "radio.txt" not in f, "a deleted file")

        (folder / "notes" / "valves.txt").rename(folder / "notes" / "valves-v3.txt")
        w.settle(lambda f: "notes/valves-v3.txt" in f and "notes/valves.txt" not in f, "a renamed file")

        (folder / "notes").rename(folder / "archive")
        w.settle(lambda f: "archive/valves-v3.txt" in f and "notes/valves-v3.txt" not in f, "a moved folder")

        _assert_equals_clean_build(w.watcher.indexer, folder, tmp_path)
        assert all(r.error is None for r in w.results), [r.error for r in w.results]


@pytest.mark.slow
def test_a_burst_of_200_files_is_synced_in_few_builds(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _seed(folder)
    with watching(folder, tmp_path) as w:
        syncs_before = w.watcher.syncs
        for i in range(200):
            _write(folder, f"burst/file-{i:03}.txt", f"Burst note {i}: part {i * 7} fits bracket {i % 13}.\n")
        w.settle(lambda f: sum(name.startswith("burst/") for name in f) == 200, "a burst of 200 files")
        # Debounced: the burst took a handful of syncs, not one per file.
        assert w.watcher.syncs - syncs_before <= 10
        _assert_equals_clean_build(w.watcher.indexer, folder, tmp_path)


@pytest.mark.slow
def test_a_file_written_slowly_ends_whole(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _seed(folder)
    lines = [f"Line {i}: the winch gearbox oil is changed after {i * 50} hours.\n" for i in range(12)]
    with watching(folder, tmp_path) as w:
        with (folder / "slow.txt").open("w") as fh:
            for line in lines:
                fh.write(line)
                fh.flush()
                time.sleep(0.3)

        def whole(files: dict[str, str]) -> bool:
            if "slow.txt" not in files:
                return False
            chunks = _committed(w.watcher.indexer)[1]
            return any(text.strip().endswith(lines[-1].strip()) for _, text in chunks)

        w.settle(whole, "a slowly written file")
        _assert_equals_clean_build(w.watcher.indexer, folder, tmp_path)


@pytest.mark.slow
def test_the_write_lock_is_respected(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _seed(folder)
    with watching(folder, tmp_path) as w:
        persist = Path(w.watcher.indexer.config.vector_store.persist_dir)
        with writer_lock(persist):  # another build is writing
            _write(folder, "locked.md", "# Lock\n\nWritten while another build held the lock.\n")
            time.sleep(3)
            assert "locked.md" not in w.files()
        w.settle(lambda f: "locked.md" in f, "a file added while the lock was held")
        _assert_equals_clean_build(w.watcher.indexer, folder, tmp_path)


def test_a_server_serves_each_new_build_without_a_restart(tmp_path: Path) -> None:
    """A server process and a separate builder (``indexer watch`` in another process): the server
    picks up each committed version on its next request."""
    from indexer.server.app import create_app

    folder = tmp_path / "docs"
    _seed(folder)
    config = write_config(tmp_path, folder, llm={"provider": "none"})
    Indexer.from_config(config).build()
    served = Indexer.from_config(config)
    with live_server(create_app(served)) as url:
        ask = {"question": "anchor chain rust", "top_k": 1, "filters": {"path": "anchor.md"}}
        assert httpx.post(url + "/v1/retrieve", json=ask, timeout=60).json()["sources"] == []
        _write(folder, "anchor.md", "# Anchor\n\nThe anchor chain is inspected for rust every spring.\n")
        Indexer.from_config(config).build()  # another process's build, as far as the server knows
        for mode in ("vector", "bm25", "hybrid"):
            got = httpx.post(url + "/v1/retrieve", json={**ask, "mode": mode}, timeout=60).json()["sources"]
            assert [s["file"] for s in got] == ["anchor.md"], mode
        assert httpx.get(url + "/v1/index", timeout=60).json()["counts"]["documents"] == 4


def test_a_long_running_process_follows_another_processs_build_in_keyword_search(tmp_path: Path) -> None:
    """A build updates the keyword index with what it writes and deletes; a process that was
    already searching sees the new file and never the deleted one, without a notice."""
    folder = tmp_path / "docs"
    _seed(folder)
    config = write_config(tmp_path, folder, llm={"provider": "none"})
    Indexer.from_config(config).build()
    served = Indexer.from_config(config)
    assert [s.file for s in served.retrieve("desiccant pack radio mast", 1, mode="bm25")] == ["radio.txt"]

    (folder / "radio.txt").unlink()
    _write(folder, "anchor.md", "# Anchor\n\nThe anchor chain is inspected for rust every spring.\n")
    Indexer.from_config(config).build()
    files = {s.file for s in served.retrieve("desiccant pack radio mast anchor", 5, mode="bm25")}
    assert "radio.txt" not in files
    answer = served.stream("anchor chain rust", 1, mode="bm25")
    assert [s.file for s in answer.sources] == ["anchor.md"] and answer.notice is None


@pytest.mark.slow
def test_serve_watch_and_watch_cli_stop_cleanly(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    _seed(folder)
    config = write_config(tmp_path, folder, llm={"provider": "none"})
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "indexer", "serve", str(config), "--port", str(port), "--watch"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(
            url + "/health",
            server,
            name="indexer serve --watch",
            timeout=180,
            output=lambda: server.communicate()[1],
        )
        ask = {"question": "anchor chain rust", "top_k": 1, "filters": {"path": "anchor.md"}}

        def found() -> bool:
            response = httpx.post(url + "/v1/retrieve", json=ask, timeout=60)
            return response.status_code == 200 and [s["file"] for s in response.json()["sources"]] == [
                "anchor.md"
            ]

        assert not found()
        _write(folder, "anchor.md", "# Anchor\n\nThe anchor chain is inspected for rust every spring.\n")
        assert wait_until(found, timeout=SETTLE_S, interval=0.5), "the served index did not follow the folder"
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert "Traceback" not in err

    watch = subprocess.Popen(
        [sys.executable, "-m", "indexer", "watch", str(config), "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        first = watch.stdout.readline()  # the catch-up sync
        assert '"error": null' in first and '"unchanged": 4' in first
    finally:
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, err
    assert "stopped watching" in err and "Traceback" not in err
