"""A real two-node Ray cluster on this machine: `ray start --head` and a second `ray start` node,
each its own process tree, joined over loopback, for the tests of ``build.engine: ray``."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.live_server import free_port

RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
_STARTED = "Ray runtime started"


@dataclass
class RayCluster:
    address: str
    # What a driver needs to join: the cluster's token (Ray's token authentication, on by default).
    env: dict[str, str]


def token_auth_env() -> dict[str, str]:
    """A fresh token for a test cluster, so nothing is read from or written to ~/.ray. A driver
    process must have these in its environment before it first imports ray, which reads them once."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


class _Node:
    """One `ray start --block`: it stays in the foreground, so stopping it stops its processes
    (GCS, raylet, workers) and nothing is left behind or needs `ray stop`, which stops every Ray
    on the machine."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_started(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(_STARTED in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("`ray start` did not start:\n" + "".join(self.lines[-40:]))
            time.sleep(0.2)

    def wait_listening(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("`ray start --head` did not listen:\n" + "".join(self.lines[-40:]))
                time.sleep(0.2)

    def wait_stopped(self) -> None:
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _ports(*names: str) -> list[str]:
    # Explicit ports: two nodes on one machine would otherwise both take Ray's fixed defaults.
    return [arg for name in names for arg in (f"--{name}", str(free_port()))]


@contextmanager
def running_ray_cluster(auth: dict[str, str], cpus_per_node: int = 1) -> Iterator[RayCluster]:
    """A head node and a worker node with ``cpus_per_node`` CPUs each, requiring the token in
    ``auth`` (see ``token_auth_env``); yields how to join it."""
    if RAY is None:
        pytest.skip("the `ray` CLI is not installed: pip install 'indexer[ray]'")
    # Not pytest's tmp_path: Ray puts Unix sockets under it, and a socket path has 107 characters.
    temp_dir = tempfile.mkdtemp(prefix="ray-")
    port = free_port()
    env = {**os.environ, **auth}
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus_per_node), "--num-gpus", "0"]
    common += ["--object-store-memory", str(100 * 1024 * 1024)]
    node_ports = ("node-manager-port", "object-manager-port", "metrics-export-port", "runtime-env-agent-port")
    agent_ports = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port")
    nodes: list[_Node] = []
    try:
        head_args = ["--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", temp_dir]
        head_args += _ports(*node_ports, *agent_ports, "ray-client-server-port")
        nodes.append(_Node([*head_args, *common], env))
        # The second node needs only the head's GCS: it starts while the head still starts its
        # raylet and agents, rather than after.
        nodes[0].wait_listening(port, timeout=180)
        worker_args = ["--address", f"127.0.0.1:{port}", *_ports(*node_ports, *agent_ports)]
        nodes.append(_Node([*worker_args, *common], env))
        nodes[0].wait_started(timeout=180)
        nodes[1].wait_started(timeout=180)
        yield RayCluster(address=f"127.0.0.1:{port}", env=dict(auth))
    finally:
        # Both at once: each takes seconds to stop its processes.
        for node in reversed(nodes):
            node.process.terminate()
        for node in reversed(nodes):
            node.wait_stopped()
        shutil.rmtree(temp_dir, ignore_errors=True)
