"""Issue 31, item 4: news, not noise. Each warning prints once per run; `watch` says which files
each sync added, changed and removed; `serve --watch` logs its syncs as info, not warnings."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.adversarial.helpers import Result, cli, small_config, write_docs
from tests.conftest import ROOT
from tests.support.live_server import free_port, wait_for_http, wait_until

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
SETTLE_S = 60


def _docs(folder: Path) -> Path:
    write_docs(folder)
    (folder / "receipt-scan.png").write_bytes(PNG)
    return folder


def _indexer(*args: str) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "indexer", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    return Result(done.returncode, done.stdout, done.stderr)


def test_the_cli_logs_each_distinct_line_once() -> None:
    from indexer.cli.running import OncePerRun

    once = OncePerRun()

    def record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord("indexer", level, __file__, 1, message, None, None)

    assert once.filter(record("skipped a.png: unsupported"))
    assert not once.filter(record("skipped a.png: unsupported"))
    assert once.filter(record("skipped b.png: unsupported"))
    assert once.filter(record("skipped a.png: unsupported", logging.INFO))


@pytest.mark.slow
def test_a_skipped_file_is_named_once_per_build(tmp_path: Path) -> None:
    config = small_config(tmp_path / "cfg", _docs(tmp_path / "docs"))
    for _ in range(2):  # the first build and an unchanged one
        result = _indexer("build", str(config))
        assert result.returncode == 0, result.stderr
        both = result.stdout + result.stderr
        assert both.count("receipt-scan.png") == 1, both
        assert "skipped receipt-scan.png: not a readable image" in result.stdout


class _Lines:
    """A process's output, a line at a time, read on a thread."""

    def __init__(self, stream: object) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put(line)

    def until(self, done: object, timeout: float = SETTLE_S) -> list[str]:
        deadline = time.monotonic() + timeout
        while not done(self.seen):  # type: ignore[operator]
            left = deadline - time.monotonic()
            assert left > 0, f"not seen in time: {self.seen}"
            try:
                self.seen.append(self.lines.get(timeout=left))
            except queue.Empty:
                continue
        return self.seen


@pytest.mark.slow
def test_watch_prints_one_line_per_sync_naming_the_files(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles", reason="needs the watch extra")
    folder = _docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", folder)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    watch = subprocess.Popen(
        [sys.executable, "-m", "indexer", "watch", str(config)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out = _Lines(watch.stdout)
    try:
        first = out.until(lambda seen: any(line.startswith("synced:") for line in seen))
        assert first[0].startswith("synced: added guides/battery.txt, mast.txt, radio.md (3 documents")
        (folder / "new.md").write_text("# New\n\nThe anchor chain is inspected every spring.\n")
        (folder / "mast.txt").write_text("The desiccant pack is replaced every three months.\n")
        (folder / "radio.md").unlink()
        (folder / "receipt-scan.png").write_bytes(PNG + b"\x01")  # still skipped: no news
        wanted = ("added new.md", "changed mast.txt", "removed radio.md")

        def all_named(seen: list[str]) -> bool:
            syncs = [line for line in seen if line.startswith("synced:")]
            return all(any(w in line for line in syncs) for w in wanted)

        seen = out.until(all_named)
    finally:
        watch.send_signal(signal.SIGINT)
        rest, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, err
    text = "".join(seen) + rest
    assert "Traceback" not in err
    for line in text.splitlines():
        assert line.startswith(("synced: ", "  skipped ")), line
    assert text.count("skipped receipt-scan.png") == 1, text
    assert "receipt-scan.png" not in err


@pytest.mark.slow
def test_serve_watch_logs_its_syncs_as_info(tmp_path: Path) -> None:
    pytest.importorskip("watchfiles", reason="needs the watch extra")
    pytest.importorskip("uvicorn", reason="needs the server extra")
    folder = _docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", folder)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "indexer", "serve", str(config), "--port", str(port), "--watch"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/health", server, name="indexer serve --watch", timeout=180,
                      output=lambda: server.communicate()[1])  # fmt: skip
        ask = {"question": "anchor chain", "top_k": 1, "filters": {"path": "anchor.md"}}

        def found() -> bool:
            response = httpx.post(url + "/v1/retrieve", json=ask, timeout=60)
            return response.status_code == 200 and len(response.json()["sources"]) == 1

        (folder / "anchor.md").write_text("# Anchor\n\nThe anchor chain is inspected every spring.\n")
        assert wait_until(found, timeout=SETTLE_S, interval=0.5), "the served index did not follow the folder"
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert "info: watch: synced: added guides/battery.txt, mast.txt, radio.md" in err
    assert "info: watch: synced: added anchor.md (4 documents" in err
    assert "warning: watch" not in err.replace("warning: watch: skipped receipt-scan.png", "")
    assert err.count("receipt-scan.png") == 1, err


def test_doctor_checks_the_documents_folder_and_the_index(tmp_path: Path) -> None:
    folder = _docs(tmp_path / "docs")
    (folder / "drawing.xcf").write_bytes(b"gimp xcf v011")  # the PNG is read (by OCR) since issue 28
    config = small_config(tmp_path / "cfg", folder)

    before = cli("doctor", str(config))
    assert before.returncode == 0, before.stderr
    assert "(readable)" in before.stdout and "4 to index, 1 of a type indexer cannot read" in before.stdout
    assert "not built yet" in before.stdout and "warning: no index yet" in before.stderr

    assert cli("build", str(config)).returncode == 0
    built = cli("doctor", str(config))
    assert built.returncode == 0, built.stderr
    assert "matches the config:    yes" in built.stdout and "current:               yes" in built.stdout
    assert "warning: no index" not in built.stderr and "behind" not in built.stderr

    (folder / "new.md").write_text("# New\n\nThe anchor chain is inspected every spring.\n")
    behind = cli("doctor", str(config))
    assert behind.returncode == 0 and "current:               no: 1 new" in behind.stdout
    assert "warning: the index is behind its folder" in behind.stderr

    other = cli("doctor", str(config), "--set", "chunking.chunk_size=100")
    assert other.returncode == 1 and "problem: the index does not match the config" in other.stderr
    assert "chunking.chunk_size" in other.stderr

    gone = cli("doctor", str(config), "--set", f"data.input_dir={tmp_path / 'nowhere'}")
    assert gone.returncode == 1 and "nowhere does not exist" in gone.stderr


def test_doctor_prints_the_sample_prompt_only_when_asked(tmp_path: Path, tiny_gguf: Path) -> None:
    config = small_config(tmp_path / "cfg", _docs(tmp_path / "docs"), llm={"model_path": str(tiny_gguf)})
    plain = cli("doctor", str(config))
    assert "tokens (--prompt prints it)" in plain.stdout
    assert "What does the log record?" not in plain.stdout and len(plain.stdout.splitlines()) < 60
    assert cli("doctor", str(config), "--json").json()["prompt"] is None

    asked = cli("doctor", str(config), "--prompt")
    assert "as llama.cpp receives it" in asked.stdout and "What does the log record?" in asked.stdout
    report = cli("doctor", str(config), "--json", "--prompt").json()
    assert "What does the log record?" in report["prompt"] and report["prompt_tokens"] > 0
