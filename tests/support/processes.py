"""What a build left on disk and in the process table, for the tests that kill or interrupt one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_manifest(config: Path) -> dict[str, Any] | None:
    """The manifest of the index at ``config``'s ``storage`` folder; None while none is readable."""
    try:
        return json.loads((config.parent / "storage" / "indexer-manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def descendants(pid: int) -> list[int]:
    """The processes below ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
