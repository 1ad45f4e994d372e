"""A missing optional extra is a one-paragraph error naming the extra, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

# Runs the CLI with the extra's package made unimportable, as if it were not installed.
_WITHOUT = """
import sys
sys.modules[{module!r}] = None
from indexer.cli import main
sys.argv = ["indexer", *{args!r}]
main()
"""


@pytest.mark.parametrize(
    ("module", "args", "extra"),
    [
        ("mcp", ["mcp", "config.yaml"], "indexer[mcp]"),
        ("watchfiles", ["watch", "config.yaml"], "indexer[watch]"),
        ("watchfiles", ["serve", "config.yaml", "--watch"], "indexer[watch]"),
    ],
)
def test_a_missing_extra_names_it(module: str, args: list[str], extra: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT.format(module=module, args=args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert extra in result.stderr and "Traceback" not in result.stderr
