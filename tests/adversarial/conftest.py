"""Faults shared by the adversarial tests, each named ``fault_*``."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def fault_permission_denied(monkeypatch: pytest.MonkeyPatch) -> set[Path]:
    """Opening a path in the returned set raises ``PermissionError``, as the kernel does for a user
    without read permission (tests run as root, whom file modes do not stop)."""
    denied: set[Path] = set()
    real_open: Callable[..., Any] = io.open

    def open_or_deny(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str | os.PathLike) and Path(file).resolve() in denied:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", open_or_deny)  # what pathlib opens files with
    return denied
