"""`indexer serve` as a user runs it: a subprocess on a free loopback port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, run_cli
from tests.support.live_server import free_port, wait_for_http


@pytest.mark.slow
def test_serve_answers_over_http_and_stops_cleanly(built_sample: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "indexer", "serve", str(built_sample), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_http(
            f"http://127.0.0.1:{port}/health",
            process,
            name="indexer serve",
            timeout=120,
            output=lambda: process.communicate()[1],
        )
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/query", json={"question": "rain gauge", "max_tokens": 4}, timeout=60
        )
        assert response.status_code == 200 and response.json()["answer"]
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"on http://127.0.0.1:{port}" in out and "Traceback" not in err


def test_serve_without_an_index_is_a_clear_error(make_config) -> None:
    result = run_cli("serve", str(make_config()), "--port", str(free_port()), timeout=120)
    assert result.returncode == 2
    assert "run `indexer build CONFIG` first" in result.stderr and "Traceback" not in result.stderr


def test_serve_on_a_port_in_use_is_a_clear_error(built_sample: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli("serve", str(built_sample), "--port", str(port), timeout=120)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr


def test_api_key_comes_from_the_environment(built_sample: Path, tmp_path: Path, monkeypatch) -> None:
    from indexer.config import load_config
    from indexer.errors import ConfigError

    config = tmp_path / "keyed.yaml"
    config.write_text(f"extends: {built_sample}\nserver:\n  api_key: ${{INDEXER_TEST_KEY}}\n")
    monkeypatch.setenv("INDEXER_TEST_KEY", "from-env")
    assert load_config(config).server.api_key == "from-env"
    monkeypatch.setenv("INDEXER_TEST_KEY", "")
    with pytest.raises(ConfigError, match=r"server\.api_key: is empty"):
        load_config(config)
