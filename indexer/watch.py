"""Keep an index in step with its folder: watch ``data.input_dir`` and, after each burst of changes
settles, run the very sync ``indexer build`` runs (``Indexer.build``). Which files changed is not
used: the exact sync finds that itself by hash, so a missed or merged event cannot leave the index
wrong, and adds, changes, deletes and renames all land the same way.

Needs the ``watch`` extra (``pip install 'indexer[watch]'``, for ``watchfiles``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.api import Indexer
from indexer.errors import IndexerError
from indexer.index.lock import IndexBusyError
from indexer.ingestion.pipeline import BuildSummary

log = logging.getLogger("indexer.watch")

# Quiet time (ms) a burst of changes must be followed by before a sync starts: one sync per burst
# (a copy of 200 files, an editor's save-and-rename), not one per event.
DEFAULT_DEBOUNCE_MS = 800
# How long to wait before trying again when another process holds the index's writer lock.
BUSY_RETRY_S = 1.0
# The longest wait before watching the folder again after the watch itself failed.
MAX_RESTART_PAUSE_S = 30.0


# Names listed per kind in a sync's line; the rest are counted ("and 12 more").
LISTED_NAMES = 5


def describe_sync(summary: BuildSummary) -> str:
    """One line for a sync: the files added, changed and removed by name, then the index's size.
    ``indexer watch`` prints it and ``indexer serve --watch`` logs it."""
    parts = []
    for key, label in (("added", "added"), ("updated", "changed"), ("deleted", "removed")):
        names = summary.changes.get(key) or []
        if names:
            more = f" and {len(names) - LISTED_NAMES} more" if len(names) > LISTED_NAMES else ""
            parts.append(f"{label} {', '.join(names[:LISTED_NAMES])}{more}")
    what = "; ".join(parts) if parts else "no changes"
    return f"synced: {what} ({summary.documents} documents, {summary.chunks} chunks, {summary.seconds:.1f} s)"


def require_watch_extra() -> None:
    try:
        import watchfiles  # noqa: F401
    except ImportError as exc:
        raise IndexerError(
            f"watching a folder needs the watch extra ({exc.name} is missing): pip install 'indexer[watch]'"
        ) from None


@dataclass
class SyncResult:
    """One sync's outcome: its summary, or the error that stopped it (the watcher carries on)."""

    summary: BuildSummary | None
    error: str | None = None


class FolderWatcher:
    """Watch the folder of ``indexer``'s config and sync the index after each burst of changes.

    ``on_sync`` is called after every sync (the first one, at start, catches up with changes made
    while nobody watched). ``run`` blocks until ``stop`` is set (or Ctrl-C in the main thread).
    """

    def __init__(
        self,
        indexer: Indexer,
        *,
        debounce_ms: int = DEFAULT_DEBOUNCE_MS,
        on_sync: Callable[[SyncResult], None] | None = None,
    ) -> None:
        require_watch_extra()
        self.indexer = indexer
        self.folder = Path(indexer.config.data.input_dir).resolve()
        self.debounce_ms = debounce_ms
        self.on_sync = on_sync
        persist = indexer.config.vector_store.persist_dir
        # The index may live inside the folder it indexes: its own writes must not trigger syncs.
        self._ignored = Path(persist).resolve() if persist is not None else None
        self.syncs = 0
        self.syncing = False
        self.last_sync_end = 0.0  # time.monotonic() of the last sync's end

    def sync(self, stop: threading.Event | None = None) -> SyncResult:
        """Run the build's exact sync once, waiting while another build holds the writer lock."""
        self.syncing = True
        try:
            result = self._sync(stop)
        finally:
            self.syncing = False
            self.last_sync_end = time.monotonic()
        self.syncs += 1
        if self.on_sync is not None:
            try:
                self.on_sync(result)
            except Exception:  # a report that fails (a closed pipe, say) must not stop the watching
                log.exception("reporting a sync failed; watching goes on")
        return result

    def _sync(self, stop: threading.Event | None) -> SyncResult:
        while True:
            try:
                summary = self.indexer.build()
            except IndexBusyError as exc:
                log.info("%s; retrying", exc)
                if stop is not None and stop.wait(BUSY_RETRY_S):
                    return SyncResult(None, "stopped while waiting for the writer lock")
                if stop is None:
                    time.sleep(BUSY_RETRY_S)
                continue
            except IndexerError as exc:  # e.g. the folder is empty for a moment: say so, keep watching
                return SyncResult(None, str(exc))
            except Exception as exc:  # no error in one sync may stop the watcher
                # The next burst of changes runs the exact sync again, which converges; a build
                # that failed midway left the committed index whole.
                log.exception("a sync failed; watching goes on")
                return SyncResult(None, f"the sync failed: {type(exc).__name__}: {exc}")
            return SyncResult(summary)

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        pause = BUSY_RETRY_S
        while not stop.is_set():
            try:
                self._watch(stop)
                return
            except Exception:  # the folder watch itself failed (the folder is gone, say): start afresh
                log.exception("watching %s failed; starting again in %.0f s", self.folder, pause)
                stop.wait(pause)
                pause = min(pause * 2, MAX_RESTART_PAUSE_S)

    def _watch(self, stop: threading.Event) -> None:
        import watchfiles

        # The first sync runs once the watcher is live (its first yield, at the latest after
        # rust_timeout), so changes made while it catches up are seen too (and, after a restart,
        # changes made while nothing watched).
        dirty = True
        for changes in watchfiles.watch(
            self.folder,
            watch_filter=self._relevant,
            debounce=self.debounce_ms,
            step=50,
            stop_event=stop,
            rust_timeout=500,
            yield_on_timeout=True,
            raise_interrupt=True,
        ):
            if stop.is_set():
                break
            if changes or dirty:
                dirty = False
                self.sync(stop)

    def start_in_thread(self) -> threading.Event:
        """Watch on a daemon thread (``indexer serve --watch``); set the event returned to stop."""
        stop = threading.Event()

        def run() -> None:
            try:
                self.run(stop)
            except Exception:  # a server keeps serving the last committed version
                log.exception("the folder watcher stopped")

        threading.Thread(target=run, name="indexer-watch", daemon=True).start()
        return stop

    def _relevant(self, _change: Any, path: str) -> bool:
        if self._ignored is None:
            return True
        candidate = Path(path)
        return candidate != self._ignored and self._ignored not in candidate.parents
