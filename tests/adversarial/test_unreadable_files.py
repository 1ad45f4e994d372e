"""Issue 10, item 8: a file that cannot be opened (permission denied) is skipped and listed by
build, status and --dry-run alike, never a traceback.

Tests run as root, whom file modes do not stop, so the denial is injected: ``fault_permission_denied``
makes opening the named paths raise ``PermissionError``, as the kernel would for another user.
"""

from __future__ import annotations

from pathlib import Path

from tests.adversarial.helpers import cli, small_config, write_docs


def test_a_file_that_cannot_be_opened_is_skipped_and_listed(
    tmp_path: Path, fault_permission_denied: set[Path]
) -> None:
    docs = write_docs(tmp_path / "docs")
    secret = docs / "guides" / "locked.txt"
    secret.write_text("Nobody may read this desiccant note.")
    fault_permission_denied.add(secret.resolve())
    config = small_config(tmp_path / "cfg", docs)
    expected = {"guides/locked.txt": "cannot read (Permission denied)"}

    dry = cli("build", str(config), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert {s["file"]: s["reason"] for s in dry.json()["skipped"]} == expected

    built = cli("build", str(config), "--json")
    assert built.returncode == 0, built.stderr
    assert {s["file"]: s["reason"] for s in built.json()["skipped"]} == expected
    assert built.json()["documents"] == 3

    status = cli("status", str(config), "--json")
    assert status.returncode == 0, status.stderr
    assert status.json()["skipped"] == expected and status.json()["up_to_date"]
    text = cli("status", str(config))
    assert "skipped  guides/locked.txt: cannot read (Permission denied)" in text.stdout

    # Readable again: the next build picks it up.
    fault_permission_denied.clear()
    again = cli("build", str(config), "--json").json()
    assert again["added"] == 1 and again["skipped"] == []
