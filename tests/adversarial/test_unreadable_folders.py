"""Issue 30, item 1: a folder or file that cannot be read for a while (``chmod 000``) keeps what
the index holds for it. It is listed as unreadable, never reported deleted, and ``--strict`` fails
the build, leaving the index as it was.

Tests run as root, whom file modes do not stop, so most denials are injected:
``fault_unlistable`` makes ``os.scandir`` of the named folders raise ``PermissionError`` and
``fault_permission_denied`` makes opening the named files raise it, as the kernel would for another
user. One test also runs the folder scan and the plan in a subprocess as an unprivileged user
(``nobody``) against a real ``chmod 000`` folder, where the machine allows it.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.helpers import assert_one_paragraph_error, cli, small_config, write_docs

LOCKED = {"locked/in.txt": "The locked cabinet holds the spare anemometer cups and their bearings.\n"}


@pytest.fixture
def fault_unlistable(monkeypatch: pytest.MonkeyPatch) -> set[Path]:
    denied: set[Path] = set()
    real_scandir: Callable[..., Any] = os.scandir

    def scandir_or_deny(path: Any = ".") -> Any:
        if isinstance(path, str | os.PathLike) and Path(path).resolve() in denied:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir_or_deny)
    return denied



def _built(tmp_path: Path) -> tuple[Path, Path]:
    docs = write_docs(tmp_path / "docs")
    write_docs(docs, LOCKED)
    config = small_config(tmp_path / "cfg", docs)
    first = cli("build", str(config), "--json")
    assert first.returncode == 0, first.stderr
    assert first.json()["documents"] == 4
    return docs, config


def _files(config: Path) -> dict[str, Any]:
    from indexer.index.manifest import MANIFEST_FILE

    return json.loads((config.parent / "storage" / MANIFEST_FILE).read_text())["files"]


def _found(config: Path, question: str) -> set[str]:
    result = cli("query", str(config), question, "--json")
    assert result.returncode == 0, result.stderr
    return {s["file"] for s in result.json()["sources"]}


def test_an_unlistable_folder_keeps_its_files_in_the_index(
    tmp_path: Path, fault_unlistable: set[Path]
) -> None:
    docs, config = _built(tmp_path)
    before = _files(config)
    fault_unlistable.add((docs / "locked").resolve())
    unreadable = [{"file": "locked/", "reason": "cannot list the folder (Permission denied)"}]

    dry = cli("build", str(config), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert dry.json()["deleted"] == 0 and dry.json()["changes"]["deleted"] == []
    assert dry.json()["unreadable"] == unreadable and dry.json()["kept"] == ["locked/in.txt"]
    assert dry.json()["documents"] == 4

    built = cli("build", str(config), "--json")
    assert built.returncode == 0, built.stderr
    summary = built.json()
    assert summary["deleted"] == 0 and summary["changes"]["deleted"] == []
    assert summary["unreadable"] == unreadable and summary["kept"] == ["locked/in.txt"]
    assert summary["documents"] == 4 and summary["chunks_embedded"] == 0
    assert _files(config) == before
    assert "locked/in.txt" in _found(config, "spare anemometer cups bearings")

    status = cli("status", str(config), "--json")
    assert status.returncode == 0, status.stderr
    report = status.json()
    assert report["deleted"] == [] and report["unreadable"] == {"locked/": unreadable[0]["reason"]}
    assert report["kept"] == ["locked/in.txt"] and report["documents"] == 4
    text = cli("status", str(config)).stdout
    assert "unreadable locked/: cannot list the folder (Permission denied)" in text
    assert "kept 1 indexed file(s)" in text and "deleted  locked/in.txt" not in text
    text = cli("build", str(config)).stdout
    assert "unreadable locked/: cannot list the folder (Permission denied)" in text

    # --strict: exit 2, one paragraph naming the folder, and the index untouched.
    for args in (("--strict",), ("--strict", "--dry-run")):
        strict = cli("build", str(config), *args)
        assert_one_paragraph_error(strict, "--strict", "locked/", "Permission denied")
    assert _files(config) == before

    # Readable again: nothing to do, nothing embedded again.
    fault_unlistable.clear()
    again = cli("build", str(config), "--json").json()
    assert again["unchanged"] == 4 and again["chunks_embedded"] == 0
    assert again["unreadable"] == [] and again["kept"] == []
    assert cli("build", str(config), "--strict", "--json").returncode == 0


def test_a_folder_removed_for_real_still_leaves_the_index(tmp_path: Path) -> None:
    """The other side: a folder that is gone (not merely unreadable) is deleted from the index."""
    docs, config = _built(tmp_path)
    (docs / "locked" / "in.txt").unlink()
    (docs / "locked").rmdir()
    summary = cli("build", str(config), "--json").json()
    assert summary["changes"]["deleted"] == ["locked/in.txt"] and summary["unreadable"] == []


def test_an_indexed_file_that_cannot_be_opened_is_kept_and_fails_strict(
    tmp_path: Path, fault_permission_denied: set[Path]
) -> None:
    docs, config = _built(tmp_path)
    before = _files(config)
    fault_permission_denied.add((docs / "locked" / "in.txt").resolve())
    reason = "cannot read (Permission denied)"

    for args in (("--dry-run", "--json"), ("--json",)):
        result = cli("build", str(config), *args)
        assert result.returncode == 0, result.stderr
        summary = result.json()
        assert summary["deleted"] == 0 and summary["kept"] == ["locked/in.txt"]
        assert summary["unreadable"] == [{"file": "locked/in.txt", "reason": reason}]
        # Held by the index, so not "skipped": its passages still answer.
        assert summary["skipped"] == [] and summary["documents"] == 4
    assert _files(config) == before
    assert "locked/in.txt" in _found(config, "spare anemometer cups bearings")

    report = cli("status", str(config), "--json").json()
    assert report["unreadable"] == {"locked/in.txt": reason} and report["kept"] == ["locked/in.txt"]
    assert report["deleted"] == [] and report["skipped"] == {}

    strict = cli("build", str(config), "--strict")
    assert_one_paragraph_error(strict, "--strict", "locked/in.txt", "Permission denied")
    assert _files(config) == before

    fault_permission_denied.clear()
    again = cli("build", str(config), "--json").json()
    assert again["unchanged"] == 4 and again["chunks_embedded"] == 0 and again["kept"] == []


def test_strict_fails_on_a_new_file_that_cannot_be_opened(
    tmp_path: Path, fault_permission_denied: set[Path]
) -> None:
    """Not indexed yet: skipped and listed as before, and now fatal under --strict."""
    docs = write_docs(tmp_path / "docs")
    secret = docs / "guides" / "locked.txt"
    secret.write_text("Nobody may read this desiccant note.")
    fault_permission_denied.add(secret.resolve())
    config = small_config(tmp_path / "cfg", docs)

    strict = cli("build", str(config), "--strict")
    assert_one_paragraph_error(strict, "--strict", "guides/locked.txt", "Permission denied")
    assert cli("status", str(config), "--json").json()["documents"] == 0

    built = cli("build", str(config), "--json").json()
    assert built["skipped"] == [{"file": "guides/locked.txt", "reason": "cannot read (Permission denied)"}]
    assert built["unreadable"] == built["skipped"] and built["kept"] == []

    # Readable again: read at the next build, and listed with the files it added (issue 30, item 11).
    fault_permission_denied.clear()
    for args in (("--dry-run", "--json"), ("--json",)):
        again = cli("build", str(config), *args).json()
        assert again["added"] == 1 and again["changes"]["added"] == ["guides/locked.txt"], args
        assert again["skipped"] == [] and again["unreadable"] == []


@pytest.mark.slow
def test_a_real_chmod_000_folder_without_root_s_dac_override(tmp_path: Path) -> None:
    """No fault injected: ``indexer build`` and ``status`` run in a subprocess whose capabilities lack
    root's DAC override (``setpriv --bounding-set=-dac_override,-dac_read_search``), over a real
    ``chmod 000`` folder, as the campaign's user did."""
    import shutil

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs util-linux's setpriv")
    docs, config = _built(tmp_path)
    before = _files(config)
    locked = docs / "locked"
    locked.chmod(0o000)
    try:

        def without_dac(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *args],
                capture_output=True,
                text=True,
                timeout=300,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            )

        probe = without_dac(sys.executable, "-c", f"import os; os.listdir({str(locked)!r})")
        if "PermissionError" not in probe.stderr:
            pytest.skip(f"cannot drop the DAC override here: {probe.returncode} {probe.stderr[-300:]}")

        built = without_dac(sys.executable, "-m", "indexer", "build", str(config), "--json")
        assert built.returncode == 0, built.stderr
        summary = json.loads(built.stdout)
        assert summary["deleted"] == 0 and summary["kept"] == ["locked/in.txt"]
        reason = "cannot list the folder (Permission denied)"
        assert summary["unreadable"] == [{"file": "locked/", "reason": reason}]
        assert _files(config) == before

        status = without_dac(sys.executable, "-m", "indexer", "status", str(config), "--json")
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["deleted"] == [] and report["kept"] == ["locked/in.txt"]

        strict = without_dac(sys.executable, "-m", "indexer", "build", str(config), "--strict")
        assert strict.returncode == 2 and strict.stderr.startswith("error: --strict"), strict.stderr
        assert "locked/" in strict.stderr and "Traceback" not in strict.stderr
        assert _files(config) == before
    finally:
        locked.chmod(0o755)
