"""Long-running processes follow builds made by another process, without a restart: `indexer
serve` in every retrieval mode with a path filter, and an `indexer chat` session."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, run_cli, write_config
from tests.support.live_server import free_port, wait_for_http

FILES = {
    "guides/lamp.md": "The harbour beacon uses a halogen bulb that is checked every night.",
    "guides/valve.md": "The greenhouse sprinkler valve QUASAR-314 opens at dawn for ten minutes.",
    "guides/chain.md": "The bicycle chain is oiled every week with OLDTERM-55 grease.",
    "other/valve.md": "A greenhouse sprinkler valve manual, kept outside the guides folder.",
}
ADDED = ("guides/lighthouse.md", "The lighthouse lamp takes a ZEPHYR-991 xenon bulb, replaced yearly.")
CHANGED = ("guides/chain.md", "The bicycle chain is oiled every month with NEWTERM-77 wax.")
DELETED = "guides/valve.md"
QUESTIONS = {
    "added": "lighthouse lamp ZEPHYR-991 xenon bulb",
    "deleted": "greenhouse sprinkler valve QUASAR-314",
    "changed": "bicycle chain oiled NEWTERM-77 OLDTERM-55",
}


def _write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


class _Chat:
    """An `indexer chat` process, driven a line at a time (its output read on a thread)."""

    def __init__(self, config: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "indexer", "chat", str(config), "--mode", "hybrid",
             "--filter", "path=guides/*", "-k", "3"],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def ask(self, question: str) -> str:
        """The sources printed for ``question`` (asked after /reset, so no history joins in)."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"/reset\n{question}\n")
        self.process.stdin.flush()
        out: list[str] = []
        while not any("Sources:" in line or "No matching passages." in line for line in out):
            out.append(self.lines.get(timeout=180))
        while True:  # the sources' lines follow at once; the session then waits for input
            try:
                out.append(self.lines.get(timeout=2))
            except queue.Empty:
                return "".join(out)

    def close(self) -> tuple[str, str]:
        assert self.process.stdin is not None
        self.process.stdin.write("/exit\n")
        self.process.stdin.flush()
        self.process.wait(timeout=60)
        assert self.process.stderr is not None
        return str(self.process.returncode), self.process.stderr.read()


def _retrieve(url: str, question: str, mode: str) -> list[dict[str, str]]:
    response = httpx.post(
        url + "/v1/retrieve",
        json={"question": question, "mode": mode, "top_k": 3, "filters": {"path": "guides/*"}},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()["sources"]


@pytest.mark.slow
def test_serve_and_chat_follow_another_processs_builds_in_every_mode(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    for name, text in FILES.items():
        _write(docs, name, text)
    config = write_config(tmp_path, docs, llm={"provider": "none"})
    assert run_cli("build", str(config)).returncode == 0

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "indexer", "serve", str(config), "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    chat = _Chat(config)
    try:
        wait_for_http(url + "/health", server, name="indexer serve", timeout=120,
                      output=lambda: server.communicate()[1])  # fmt: skip
        for mode in ("vector", "bm25", "hybrid"):  # every mode has searched the old index
            before = _retrieve(url, QUESTIONS["deleted"], mode)
            assert before[0]["file"] == DELETED and all(s["file"].startswith("guides/") for s in before)
        assert DELETED in chat.ask(QUESTIONS["deleted"])

        # Another process builds: a file added, one deleted, one changed.
        _write(docs, *ADDED)
        (docs / DELETED).unlink()
        _write(docs, *CHANGED)
        built = run_cli("build", str(config), "--json")
        assert built.returncode == 0, built.stderr

        for mode in ("vector", "bm25", "hybrid"):
            added = _retrieve(url, QUESTIONS["added"], mode)
            assert added[0]["file"] == ADDED[0], mode
            gone = _retrieve(url, QUESTIONS["deleted"], mode)
            assert DELETED not in {s["file"] for s in gone}, mode
            changed = _retrieve(url, QUESTIONS["changed"], mode)
            texts = [s["text"] for s in changed if s["file"] == CHANGED[0]]
            assert texts and "NEWTERM-77" in texts[0], mode
            assert not any("OLDTERM" in s["text"] for s in changed), mode
            for sources in (added, gone, changed):
                assert all(s["file"].startswith("guides/") for s in sources), mode  # the filter holds

        assert ADDED[0] in chat.ask(QUESTIONS["added"])
        after = chat.ask(QUESTIONS["deleted"])
        assert DELETED not in after and "other/" not in after
        changed_out = chat.ask(QUESTIONS["changed"])
        assert "NEWTERM-77" in changed_out and "OLDTERM" not in changed_out
    finally:
        code, chat_err = chat.close()
        server.send_signal(signal.SIGINT)
        _, server_err = server.communicate(timeout=30)
    assert code == "0" and "Traceback" not in chat_err, chat_err
    assert "Traceback" not in server_err, server_err
