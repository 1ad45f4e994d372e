"""OpenMP settings that must be in the environment before torch loads its OpenMP runtime."""

from __future__ import annotations

import os


def set_wait_policy_before_torch() -> None:
    """Let idle OpenMP threads sleep instead of spin; a user's own OMP_WAIT_POLICY wins.

    OpenMP's default is to spin while waiting; on a busy machine (Chroma's threads, other jobs) the
    spinning threads wait out whole scheduler slices, and embedding a one-line query with torch took
    ~1 s instead of ~20 ms in benchmarks/query.py. The runtime reads the variable once, when torch is
    first imported, so every loader that imports torch calls this first.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
