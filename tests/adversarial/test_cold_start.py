"""A cold CLI call does only the imports its work needs: a retrieve-only question is embedded by
onnxruntime and tokenizers, never torch or sentence-transformers (5 to 10 s of imports on a small
CPU). Times are measured by benchmarks/cold_start.py, not here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.adversarial.helpers import cli, small_config, write_docs
from tests.conftest import ROOT

HEAVY = ("torch", "sentence_transformers", "transformers", "llama_index.embeddings.huggingface")

# The console script's own code path, in a fresh interpreter, reporting what it imported.
_RUN_CLI = """
import json, sys
heavy = json.loads(sys.argv[2])
sys.argv = ["indexer", *json.loads(sys.argv[1])]
from indexer.cli import main
try:
    main()
except SystemExit:
    pass
print("MODULES=" + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in heavy)))
"""


def _cli_in_subprocess(*args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    argv = [sys.executable, "-c", _RUN_CLI, json.dumps(args), json.dumps(HEAVY)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env={**os.environ}, timeout=300)
    marker = [line for line in done.stdout.splitlines() if line.startswith("MODULES=")]
    assert marker, (done.stdout, done.stderr)
    return done, json.loads(marker[-1].removeprefix("MODULES="))


def test_retrieve_only_query_imports_neither_torch_nor_sentence_transformers(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs)
    assert cli("build", str(config)).returncode == 0

    done, heavy = _cli_in_subprocess(
        "query", str(config), "How often is the desiccant replaced?", "--retrieve-only", "--json"
    )

    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[0])
    assert answer["sources"][0]["file"] == "mast.txt"
    assert heavy == [], f"the retrieve-only path imported {heavy}"
