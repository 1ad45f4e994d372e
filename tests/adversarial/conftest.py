"""Faults shared by the adversarial tests, each named ``fault_*``."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.helpers import small_config, write_docs


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


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The config of ``helpers.DOCS``, built once per module (retrieval only); tests only read it."""
    from indexer import Indexer

    root = tmp_path_factory.mktemp("built")
    config = small_config(root / "cfg", write_docs(root / "docs"))
    Indexer.from_config(config).build()
    return config
