"""Issue 10, item 4: file names and document text reach the terminal as visible text, never as
escape sequences (an OSC title change, a screen clear, a right-to-left override)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from indexer.terminal import printable, rich_safe
from tests.adversarial.helpers import cli, small_config, write_docs
from tests.conftest import ROOT

TITLE_CHANGE = "\x1b]0;owned\x07"
CLEAR_SCREEN = "\x1b[2J"
RLO = "\u202e"


def test_names_and_passages_are_printed_without_escape_sequences(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    (docs / f"{TITLE_CHANGE}notes{RLO}txt.md").write_text(
        f"# Heading {CLEAR_SCREEN}[bold]styled[/bold]\n\nThe desiccant {TITLE_CHANGE} gel is "
        "replaced every six months, says the escape file.\n",
        encoding="utf-8",
    )
    (docs / f"{CLEAR_SCREEN}blob.bin").write_bytes(b"\x00\x01binary")  # skipped, and named
    config = small_config(tmp_path / "cfg", docs)

    outputs = []
    for args in (
        ("build", str(config)),
        ("status", str(config)),
        ("query", str(config), "escape file desiccant replaced", "--top-k", "4"),
    ):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    everything = "\n".join(outputs)
    for raw in ("\x1b", "\x07", RLO):
        assert raw not in everything
    assert "\\x1b]0;owned\\x07notes\\u202etxt.md" in outputs[2]  # the citation, made visible
    assert "skipped \\x1b[2Jblob.bin" in outputs[0]


@pytest.mark.slow  # an `indexer watch` process: its first sync embeds the folder
def test_watch_prints_names_without_escape_sequences(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles", reason="needs the watch extra: pip install 'indexer[watch]'")
    docs = write_docs(tmp_path / "docs")
    (docs / f"{TITLE_CHANGE}notes{RLO}txt.md").write_text("The desiccant is replaced yearly.\n")
    (docs / f"{CLEAR_SCREEN}blob.bin").write_bytes(b"\x00\x01binary")  # skipped, and named
    config = small_config(tmp_path / "cfg", docs)
    watch = subprocess.Popen(
        [sys.executable, "-m", "indexer", "watch", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # readline takes one line: communicate() below reads the pipe, not a buffer
    )
    stuck = threading.Timer(180, watch.kill)  # every read below is bounded
    stuck.start()
    try:
        assert watch.stdout is not None
        first = watch.stdout.readline()  # the catch-up sync's line
        skipped = watch.stdout.readline()  # then the file it skipped, before Ctrl-C cuts it short
    finally:
        watch.send_signal(signal.SIGINT)
        rest, err = watch.communicate(timeout=60)
        stuck.cancel()
    printed = (first + skipped + rest + err).decode("utf-8")
    assert watch.returncode == 0, printed
    assert first.startswith(b"synced: added "), printed
    for raw in ("\x1b", "\x07", RLO):
        assert raw not in printed
    assert "\\x1b]0;owned\\x07notes\\u202etxt.md" in first.decode()
    assert skipped.decode().startswith("  skipped \\x1b[2Jblob.bin: ")


def test_the_helper_keeps_text_and_escapes_markup() -> None:
    assert printable("a\tb\nc", multiline=True) == "a\tb\nc"
    assert printable("a\nb") == "a\\x0ab"
    assert printable("x" * 50, limit=10) == "xxxxxxx..."
    assert printable("\x9b31m") == "\\x9b31m"  # C1 CSI, the one-byte escape
    assert rich_safe("[bold]x[/bold]\x1b") == "\\[bold]x\\[/bold]\\x1b"
