"""The documentation cannot drift from the code: every config field is described, the generated
references are current, the site builds offline without loading anything from elsewhere, and every
shell and Python example of the README and docs/ runs against the sample data.

An example that cannot run here is preceded by ``<!-- not-run: REASON -->`` (a GPU, a Ray cluster,
a server that runs until Ctrl-C, a network model) and is reported as skipped with that reason.
Examples run with the tiny test GGUF in place of SmolLM2 (``INDEXER_MODEL``), against a built
copy of the sample config in place of ``configs/sample.yaml``, with ``indexer`` and
``.venv/bin/indexer`` running this checkout. Each Python example and ``indexer`` command runs in a
process of its own, forked from one that has imported torch, LlamaIndex, Chroma and llama.cpp once
(tests/support/warm_python.py): a new interpreter spent most of an example's CPU on them. Only an
``indexer query`` that answers runs in a new interpreter, as a user's does: it forks its retrieval
only where none of those libraries is loaded yet (indexer/query/prefetch.py).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ROOT, SAMPLE_DIR

NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(?P<reason>.+?)\s*-->$")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")
RUNNABLE = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python"}
# The pages whose examples are run (generated pages hold --help text only).
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "tools" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Block:
    file: Path
    line: int
    lang: str
    code: str
    not_run: str | None

    @property
    def id(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, each with the not-run reason written just above it."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        start = index
        index += 1
        body = []
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        previous = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        marker = NOT_RUN.match(previous)
        blocks.append(
            Block(
                path, start + 1, opening["lang"], "\n".join(body) + "\n", marker["reason"] if marker else None
            )
        )
        index += 1
    return blocks


def _examples() -> list[Any]:
    params = []
    for path in DOC_FILES:
        for block in code_blocks(path):
            if block.lang not in RUNNABLE:
                continue
            marks = [pytest.mark.slow]
            if block.not_run:
                marks.append(pytest.mark.skip(reason=f"not runnable: {block.not_run}"))
            params.append(pytest.param(block, id=block.id, marks=marks))
    return params


def test_every_config_field_has_a_description() -> None:
    missing = [
        name for name, field, _ in _gen_docs().config_fields() if not (field.description or "").strip()
    ]
    assert not missing, f"config fields without description= in indexer/config/models.py: {missing}"


def test_generated_references_are_current() -> None:
    result = subprocess.run(
        [sys.executable, "tools/gen_docs.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_every_example_block_is_runnable_or_says_why() -> None:
    """A block in a language the runner does not know would silently go unchecked."""
    for path in DOC_FILES:
        for block in code_blocks(path):
            assert block.lang, f"{block.id}: a code block needs a language (```bash, ```yaml, ```text, ...)"
            assert block.not_run is None or block.lang in RUNNABLE, (
                f"{block.id}: not-run on a {block.lang} block"
            )


@pytest.mark.slow
def test_site_builds_offline_and_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra (make setup installs it)")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (site / "index.html").is_file()
    assert _gen_docs().remote_loads(site) == []


def test_remote_loads_are_found(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css"><script src="//cdn.example/x.js">'
        '</script><a href="https://example.org">a link is fine</a><script src="assets/local.js"></script>'
    )
    assert _gen_docs().remote_loads(tmp_path) == [
        "page.html: https://fonts.googleapis.com/css",
        "page.html: //cdn.example/x.js",
    ]


# What the examples import, once, in the process they are forked from: the CLI's own imports and
# the libraries its commands and the Python API load on first use. Only modules that start no
# thread of their own when imported: a fork keeps none, and onnxruntime's exit then waits forever
# on its pool's thread (the child imports it itself). The OpenBLAS pools of NumPy and SciPy stop
# themselves before a fork.
WARM_MODULES = [
    "indexer.cli",
    "indexer.api",
    "indexer.eval.runner",
    "indexer.eval.llama_index",
    "chromadb",
    "llama_cpp",
    "bm25s",
    "torch",
    "transformers",
    "sentence_transformers",
    "llama_index.core",
    "llama_index.core.evaluation",
    "llama_index.vector_stores.chroma",
    "matplotlib",
]
WARM_PYTHON = ROOT / "tests" / "support" / "warm_python.py"


@contextmanager
def warm_python(env: dict[str, str], cwd: Path) -> Iterator[str]:
    """A server of warm Python processes (tests/support/warm_python.py); yields its socket."""
    # Not pytest's tmp_path: a Unix socket path has at most 107 characters.
    folder = Path(tempfile.mkdtemp(prefix="warm-python-"))
    socket_path = str(folder / "socket")
    log = folder / "server.log"
    with log.open("wb") as errors:
        server = subprocess.Popen(
            [sys.executable, str(WARM_PYTHON), "serve", socket_path, *WARM_MODULES],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":  # the imports are done
            server.wait(timeout=60)
            pytest.fail(f"the warm Python server did not start:\n{log.read_text()[-3000:]}")
        yield socket_path
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def example_env(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, built_sample: Path
) -> Iterator[dict[str, Any]]:
    """Where the examples run: a built copy of the sample config, a copy of the sample folder for
    ``~/my-notes``, private config and data directories, ``indexer`` on PATH, and the warm Python
    server that ``indexer`` and the Python examples run in."""
    root = tmp_path_factory.mktemp("doc-examples")
    # The session's built sample index, copied whole (config and storage beside it): the examples
    # may write to theirs, and the same corpus and model need no second build.
    shutil.copytree(built_sample.parent, root / "sample")
    config = root / "sample" / built_sample.name
    notes = root / "my-notes"
    shutil.copytree(SAMPLE_DIR, notes)
    work = root / "work"
    work.mkdir()
    (work / "data").symlink_to(ROOT / "data")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "INDEXER_MODEL": str(tiny_gguf),
        "INDEXER_CONFIG_DIR": str(root / "config-dir"),
        "INDEXER_DATA_DIR": str(root / "data-dir"),
    }
    with warm_python(env, work) as socket_path:
        # `indexer ARGS` is `python -m indexer ARGS`: in a process forked from the warm one, but for
        # a `query` that answers, whose cold start differs where the libraries are loaded (see the
        # module's notes); with --retrieve-only no model answers and nothing is forked.
        run = [sys.executable, str(WARM_PYTHON), "run", socket_path]
        cold = shlex.join([sys.executable, "-m", "indexer"])
        shim = bin_dir / "indexer"
        shim.write_text(
            "#!/bin/sh\n"
            'if [ "$1" = query ]; then\n'
            "  answers=1\n"
            '  for arg do [ "$arg" = --retrieve-only ] && answers=; done\n'
            f'  [ -n "$answers" ] && exec {cold} "$@"\n'
            "fi\n"
            f'exec {shlex.join(run)} -m indexer "$@"\n'
        )
        shim.chmod(0o755)
        yield {"config": config, "notes": notes, "work": work, "env": env, "run": run}


def _localise(code: str, env: dict[str, Any]) -> str:
    code = code.replace(".venv/bin/indexer", "indexer").replace("configs/sample.yaml", str(env["config"]))
    return code.replace("~/my-notes", str(env["notes"]))


@pytest.mark.parametrize("block", _examples())
def test_example_runs(block: Block, example_env: dict[str, Any]) -> None:
    code = _localise(block.code, example_env)
    if RUNNABLE[block.lang] == "bash":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        script = example_env["work"] / f"example_{block.file.stem}_{block.line}.py"
        script.write_text(code)
        command = [*example_env["run"], str(script)]  # as `python SCRIPT`
    result = subprocess.run(
        command,
        cwd=example_env["work"],
        env=example_env["env"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"{block.id} exited {result.returncode}\n--- code\n{code}\n--- stdout\n{result.stdout[-3000:]}"
        f"\n--- stderr\n{result.stderr[-3000:]}"
    )


@pytest.mark.browser
@pytest.mark.slow
def test_screenshot_script_writes_the_page(built_sample: Path, tmp_path: Path) -> None:
    """tools/screenshot.py, which regenerates docs/web-page.png, against the built sample index
    (the tiny model answers) into a temporary file."""
    out = tmp_path / "page.png"
    result = subprocess.run(
        [
            sys.executable,
            "tools/screenshot.py",
            "--config",
            str(built_sample),
            "--no-build",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
