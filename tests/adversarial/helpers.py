"""Shared by the adversarial tests: a small corpus, its config, and the CLI run in-process.

Every test runs the real components (bundled MiniLM, embedded Chroma, real HTTP on loopback). A
fault is injected only where the real condition cannot be made in a test (a full disk, a
read-only folder when tests run as root), by a monkeypatch whose name starts with ``fault_``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tests.conftest import write_config

DOCS = {
    "mast.txt": "The silica gel desiccant pack in the mast is replaced every six months.\n",
    "radio.md": "# Radio\n\nThe European mast transmits on 868 MHz with a duty cycle of one percent.\n",
    "guides/battery.txt": "Charge the logger battery to 80 percent before winter storage.\n",
}


def write_docs(folder: Path, docs: dict[str, str] | None = None) -> Path:
    for name, text in (docs or DOCS).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def small_config(folder: Path, docs: Path, **sections: Any) -> Path:
    """A retrieval-only config over ``docs``, its index in ``folder/storage``."""
    folder.mkdir(parents=True, exist_ok=True)
    sections.setdefault("llm", {"provider": "none"})
    return write_config(folder, docs, **sections)


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli(*args: str) -> Result:
    """``indexer ARGS`` in this process (typer's runner): the same code as the console script,
    without a torch import per call, and with this process's monkeypatched faults in effect."""
    from indexer.cli import app

    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def assert_one_paragraph_error(result: Result, *needles: str) -> None:
    """Exit 2, ``error: ...`` on stderr, no traceback, naming every needle."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
