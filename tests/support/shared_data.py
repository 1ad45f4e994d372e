"""Tests on the real data in ``../shared/data``, beside the checkout. Mark them
``@pytest.mark.shared_data(PATH)``: without PATH they skip on a developer's machine, but in CI
(``CI`` set, as CI services do), where the data must be there, they fail and say where it was
looked for, so a missing checkout of the data cannot pass as a green run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MARKER = "shared_data(path): the test reads this shared data; skipped without it, failed in CI"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_shared_data(path: Path) -> None:
    """Return when ``path`` exists; otherwise skip the test, or fail it in CI."""
    if path.exists():
        return
    if in_ci():
        pytest.fail(
            f"shared test data not found at {path}: CI must provide ../shared/data beside the checkout "
            "(outside CI, unset CI to skip these tests)",
            pytrace=False,
        )
    pytest.skip(f"shared test data not found at {path}")
