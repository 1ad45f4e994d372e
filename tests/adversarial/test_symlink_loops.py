"""Issue 30, item 4: a symbolic link loop (two links pointing at each other, a link to itself, a
linked folder that leads back up) is skipped and listed by build, status and --dry-run, with
``data.follow_symlinks`` on or off, never a traceback. Made while ``indexer watch`` runs, it does
not stop the watcher; nor does any other error in one sync (``fault_sync_crash``).

The watcher tests drive a real ``FolderWatcher`` (watchfiles) on a thread over a temporary folder,
as tests/test_watch.py does, each wait bounded.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.helpers import cli, small_config, write_docs

LOOPS = ("loopA.txt", "loopB.txt", "self.txt", "guides/ring.md")
# Bounded waits, sized for a shared 2-core machine that embeds on its CPUs.
SETTLE_S = 60


def _make_loops(docs: Path) -> None:
    os.symlink("loopA.txt", docs / "loopB.txt")
    os.symlink("loopB.txt", docs / "loopA.txt")
    os.symlink("self.txt", docs / "self.txt")
    os.symlink("ring.md", docs / "guides" / "ring.md")
    os.symlink("..", docs / "guides" / "up")  # a folder loop: a linked folder is never entered
    os.symlink("round", docs / "round")  # a loop without a document's extension


@pytest.mark.parametrize("follow", [False, True])
def test_a_symlink_loop_is_skipped_and_listed_in_every_mode(tmp_path: Path, follow: bool) -> None:
    docs = write_docs(tmp_path / "docs")
    _make_loops(docs)
    config = small_config(tmp_path / "cfg", docs, data={"input_dir": str(docs), "follow_symlinks": follow})
    reason = "symbolic link loop" if follow else "symbolic link (not followed"

    dry = cli("build", str(config), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    skipped = {s["file"]: s["reason"] for s in dry.json()["skipped"]}
    assert all(reason in skipped[name] for name in LOOPS), skipped

    built = cli("build", str(config), "--json")
    assert built.returncode == 0, built.stderr
    summary = built.json()
    skipped = {s["file"]: s["reason"] for s in summary["skipped"]}
    assert all(reason in skipped[name] for name in LOOPS), skipped
    assert summary["documents"] == 3

    status = cli("status", str(config), "--json")
    assert status.returncode == 0, status.stderr
    assert all(reason in status.json()["skipped"][name] for name in LOOPS)
    assert status.json()["up_to_date"]
    text = cli("status", str(config))
    assert text.returncode == 0 and "skipped  loopA.txt: " + reason in text.stdout


class Watched:
    def __init__(self, watcher: Any) -> None:
        self.watcher = watcher
        self.results: list[Any] = []

    def files(self) -> set[str]:
        manifest = self.watcher.indexer.index.manifest_file.load()
        return set() if manifest is None else set(manifest.files)

    def wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            if done():
                return
            assert self.thread.is_alive(), f"the watcher stopped: {self.results[-3:]}"
            time.sleep(0.1)
        pytest.fail(f"the watcher did not catch up with {what} in {SETTLE_S} s: {self.results[-3:]}")

    thread: threading.Thread


@contextmanager
def watching(docs: Path, config: Path) -> Iterator[Watched]:
    from indexer import Indexer
    from indexer.watch import FolderWatcher

    watched: Watched
    watcher = FolderWatcher(
        Indexer.from_config(config), debounce_ms=300, on_sync=lambda r: watched.results.append(r)
    )
    watched = Watched(watcher)
    stop = threading.Event()
    watched.thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    watched.thread.start()
    try:
        watched.wait(lambda: watcher.syncs >= 1, "the first sync")
        yield watched
    finally:
        stop.set()
        watched.thread.join(timeout=30)
        assert not watched.thread.is_alive(), "the watcher did not stop"


@pytest.mark.parametrize("follow", [False, True])
def test_a_loop_made_while_watching_does_not_stop_the_watcher(tmp_path: Path, follow: bool) -> None:
    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs, data={"input_dir": str(docs), "follow_symlinks": follow})
    with watching(docs, config) as w:
        assert w.files() == {"mast.txt", "radio.md", "guides/battery.txt"}
        _make_loops(docs)

        def loops_listed() -> bool:
            last = w.results[-1].summary if w.results else None
            return last is not None and {s["file"] for s in last.skipped} >= set(LOOPS)

        w.wait(loops_listed, "the loops")
        (docs / "anchor.md").write_text("# Anchor\n\nThe anchor chain is inspected for rust every spring.\n")
        w.wait(lambda: "anchor.md" in w.files(), "a file added after the loops")
        assert all(r.error is None for r in w.results), [r.error for r in w.results]


def test_an_error_in_one_sync_does_not_stop_the_watcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fault_sync_crash``: the second sync's build raises an unexpected error (not an
    ``IndexerError``), as a bug or an unforeseen ``OSError`` would. The watcher reports it, keeps
    watching, and the next change lands."""
    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs)
    with watching(docs, config) as w:
        real_build = w.watcher.indexer.build
        calls = {"n": 0}

        def fault_sync_crash(**kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError(40, "Too many levels of symbolic links", "injected")
            return real_build(**kwargs)

        monkeypatch.setattr(w.watcher.indexer, "build", fault_sync_crash)
        (docs / "first.txt").write_text("The first note after the fault: the capstan is greased.\n")
        w.wait(lambda: any(r.error for r in w.results), "the failed sync")
        failed = next(r.error for r in w.results if r.error)
        assert "Too many levels of symbolic links" in failed
        (docs / "second.txt").write_text("The second note: the windlass pawl is checked monthly.\n")
        w.wait(lambda: {"first.txt", "second.txt"} <= w.files(), "the files after the failed sync")
