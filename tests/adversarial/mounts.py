"""Real filesystems for the storage tests: a small tmpfs (a disk that fills up) and a read-only
bind mount. Mounting needs root (or CAP_SYS_ADMIN); without it the test is skipped, saying why.
Every mount is undone in a ``finally``, whatever the test did."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    try:
        done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a filesystem for this test (mount {' '.join(args)}): {exc}")
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a filesystem for this test (mount {' '.join(args)}): "
            f"{done.stderr.strip() or done.returncode}; it needs root or CAP_SYS_ADMIN"
        )


def _umount(target: Path) -> None:
    # Lazy: a file a test left open must not leave the mount behind.
    subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


@contextmanager
def tmpfs(target: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's syntax, e.g. ``13m``) on ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target))
    try:
        yield target
    finally:
        _umount(target)


def resize_tmpfs(target: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(target)], check=True, timeout=30)


@contextmanager
def read_only_view(source: Path, target: Path) -> Iterator[Path]:
    """``source`` seen read-only at ``target`` (a read-only bind mount: writes fail with EROFS,
    for root too)."""
    target.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(source), str(target))
    try:
        done = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(target)], capture_output=True, text=True, timeout=30
        )
        if done.returncode != 0:
            pytest.skip(f"cannot make a read-only bind mount for this test: {done.stderr.strip()}")
        yield target
    finally:
        _umount(target)
