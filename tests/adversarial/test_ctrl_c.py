"""Ctrl-C during ``indexer build`` (issue 30, D): at any moment the build stops with exit 130,
prints no traceback and never aborts ("terminate called without an active exception", SIGABRT),
a second Ctrl-C right after the first never aborts either, and no helper process outlives it. The
next build then ends exactly where a clean build of the folder ends.

Real ``python -m indexer build`` processes, their stderr on a pseudo-terminal (so the progress bar
runs, as for a user), in a session of their own: SIGINT goes to the whole process group, as a
terminal's Ctrl-C does, the chunking workers, the fork server and the encoder process included.
The builds and status reads after them, which no Ctrl-C reaches, run the CLI in this process.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.helpers import cli
from tests.conftest import ROOT, write_config
from tests.support.corpus import write_corpus
from tests.support.index_probe import probe
from tests.support.processes import descendants, read_manifest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# Generous: the machine running the tests is shared. The goal (2 s) is measured and reported.
EXIT_BOUND_SECONDS = 10.0
# Small batches: many encode calls and commits, so each moment below lasts long enough to hit.
SETTINGS: dict[str, Any] = {
    "chunking": {"chunk_size": 128, "chunk_overlap": 16},
    "embedding": {"batch_size": 16},
    "build": {"workers": 1},
}
_EMBEDDED = re.compile(rb"\((\d+) chunks embedded\)")


def _corpus(docs: Path) -> None:
    write_corpus(docs, files=30, sentences=20)
    # One large document: a single encode call of over a hundred chunks (the case where embedding
    # went on for minutes after Ctrl-C; 540 sentences make 108 chunks of 128 tokens), then small
    # ones. Each interrupted build embeds it before its moment comes: no larger than that.
    write_corpus(docs / "large", files=1, sentences=540, seed=11)


def _revise(docs: Path, revision: int) -> None:
    for path in sorted(docs.rglob("*.txt")):
        with path.open("a", encoding="utf-8") as out:
            out.write(f"Revision {revision} of this note.\n")


def _config(folder: Path, docs: Path, **sections: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    merged = {name: {**values, **sections.get(name, {})} for name, values in SETTINGS.items()}
    return write_config(folder, docs, llm={"provider": "none"}, **merged)


# -- the moments: each a test of the build's state and of what its terminal shows -----------------

Moment = Callable[[Path, bytes], bool]


def _planning(config: Path, _: bytes) -> bool:
    """The writer lock is held: discovery is done; the build plans and loads the model."""
    return (config.parent / "storage" / "indexer-build.owner.json").exists()


def _embedding(_: Path, terminal: bytes) -> bool:
    """The first results of the model are in: an encode call is under way, chunking too."""
    return any(int(n) > 0 for n in _EMBEDDED.findall(terminal))


class _Writing:
    """The build has recorded its intent to write a batch (``pending``): its chunks are being
    written to Chroma. A ``pending`` left by an earlier interrupted build does not count until this
    build has cleared it."""

    def __init__(self, config: Path) -> None:
        manifest = read_manifest(config)
        self.cleared = not (manifest and manifest["pending"])

    def __call__(self, config: Path, _: bytes) -> bool:
        manifest = read_manifest(config)
        if manifest is None:
            return False
        if not manifest["pending"]:
            self.cleared = True
            return False
        return self.cleared


class Interrupted:
    def __init__(self, returncode: int, seconds: float, terminal: str, stdout: str) -> None:
        self.returncode, self.seconds, self.terminal, self.stdout = returncode, seconds, terminal, stdout


def _interrupt_build(config: Path, moment: Moment, *, second_after: float | None = None) -> Interrupted:
    """Start a build, send Ctrl-C to its process group at ``moment`` (and again ``second_after``
    seconds later), and check that it and every process it started are gone."""
    main, child = pty.openpty()
    build = subprocess.Popen(
        [sys.executable, "-m", "indexer", "build", str(config)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=child,
        start_new_session=True,
    )
    os.close(child)
    terminal = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not data:
                return
            terminal.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while not moment(config, bytes(terminal)):
            shown = terminal.decode(errors="replace")[-3000:]
            assert build.poll() is None, f"the build ended first: enlarge the corpus\n{shown}"
            assert time.monotonic() < deadline, "the moment never came"
            time.sleep(0.01)
        helpers = descendants(build.pid)
        sent = time.monotonic()
        os.killpg(build.pid, signal.SIGINT)
        if second_after is not None:
            time.sleep(second_after)
            os.killpg(build.pid, signal.SIGINT)
        build.wait(timeout=120)
        seconds = time.monotonic() - sent
    finally:
        if build.poll() is None:
            os.killpg(build.pid, signal.SIGKILL)
            build.wait()
    assert build.stdout is not None
    stdout = build.stdout.read().decode(errors="replace")
    build.stdout.close()
    reader.join(timeout=10)
    os.close(main)
    deadline = time.monotonic() + 10
    while [p for p in helpers if Path(f"/proc/{p}").exists()] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in helpers if Path(f"/proc/{p}").exists()], "Ctrl-C left processes running"
    return Interrupted(build.returncode, seconds, terminal.decode(errors="replace"), stdout)


def _assert_stopped_cleanly(result: Interrupted) -> None:
    # The end of what the terminal showed: a progress bar redraws itself ten times a second.
    shown = f"exit {result.returncode} after {result.seconds:.1f} s\n{result.terminal[-3000:]}\n"
    assert result.returncode == 130, shown
    assert result.seconds < EXIT_BOUND_SECONDS, shown
    assert "Traceback" not in result.terminal, shown
    assert "terminate called" not in result.terminal, shown
    assert "interrupted" in result.terminal, shown
    # The progress bar hid the cursor; it is shown again.
    assert result.terminal.rfind("\x1b[?25h") >= result.terminal.rfind("\x1b[?25l"), shown


@pytest.mark.slow
def test_ctrl_c_stops_a_build_at_any_moment_and_the_next_build_recovers(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    _corpus(docs)
    config = _config(tmp_path / "index", docs)

    # Each a moment, made just before its build, and the delay of a second Ctrl-C.
    moments: dict[str, tuple[Callable[[], Moment], float | None]] = {
        "planning": (lambda: _planning, None),
        "embedding": (lambda: _embedding, None),
        "writing": (lambda: _Writing(config), None),
        "twice": (lambda: _embedding, 0.05),
    }
    results = {}
    for revision, (name, (moment, second_after)) in enumerate(moments.items()):
        _revise(docs, revision)  # every file changed: each build has the whole corpus to embed
        results[name] = _interrupt_build(config, moment(), second_after=second_after)
    for result in results.values():
        _assert_stopped_cleanly(result)
    print({name: round(r.seconds, 2) for name, r in results.items()})  # the 2 s goal, as measured

    status = cli("status", str(config), "--json")
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr

    again = cli("build", str(config), "--json")
    assert again.returncode == 0, again.stderr
    after = json.loads(cli("status", str(config), "--json").stdout)
    assert after["up_to_date"] and not after["interrupted"], after

    clean = _config(tmp_path / "clean", docs)
    assert cli("build", str(clean), "--json").returncode == 0
    clean_status = json.loads(cli("status", str(clean), "--json").stdout)
    assert json.loads(again.stdout)["chunks"] == clean_status["chunks"]
    ids = sorted(probe(config.parent / "storage", "test")["ids"])
    assert ids == sorted(probe(clean.parent / "storage", "test")["ids"])


@pytest.mark.slow
def test_ctrl_c_twice_at_once_with_an_encoder_process(tmp_path: Path) -> None:
    """The encoder in a process of its own (as on CUDA): two Ctrl-C in quick succession while it
    embeds."""
    docs = tmp_path / "docs"
    _corpus(docs)
    config = _config(tmp_path / "index", docs, build={"encoder_process": True})
    _assert_stopped_cleanly(_interrupt_build(config, _embedding, second_after=0.01))
    again = cli("build", str(config), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(cli("status", str(config), "--json").stdout)["up_to_date"]


def test_ctrl_c_stops_the_cpu_streams_after_the_item_each_computes() -> None:
    """The forward passes of one encode call (a large document gives hundreds) stop at Ctrl-C:
    each stream ends after the batch it computes."""
    from indexer.components.cpu_streams import map_in_streams

    computed: list[int] = []

    def work(n: int) -> int:
        if n == 4:
            os.kill(os.getpid(), signal.SIGINT)  # to the main thread, waiting for the streams
        time.sleep(0.02)
        computed.append(n)
        return n

    with pytest.raises(KeyboardInterrupt):
        map_in_streams(work, list(range(500)), 2)
    for stream in [t for t in threading.enumerate() if t.name.startswith("indexer-cpu-stream")]:
        stream.join(timeout=60)
        assert not stream.is_alive()
    assert len(computed) < 50, computed
