"""Tests on ../shared/data skip without it on a developer's machine, and fail in CI, naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.shared_data import require_shared_data


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_missing_shared_data_fails_in_ci_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    missing = tmp_path / "msmarco_subset"
    with pytest.raises(pytest.fail.Exception, match=f"shared test data not found at {missing}"):
        require_shared_data(missing)


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_missing_shared_data_skips_outside_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="shared test data not found"):
        require_shared_data(tmp_path / "missing")


def test_present_shared_data_runs_in_and_out_of_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    require_shared_data(tmp_path)
    monkeypatch.delenv("CI")
    require_shared_data(tmp_path)
