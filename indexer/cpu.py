"""What this machine's CPU is and which instruction-set extensions it offers (/proc/cpuinfo)."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first value of each /proc/cpuinfo field (empty where there is none, e.g. macOS)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    return set(_cpuinfo().get("flags", "").split())


def cpu_count() -> int:
    """The cores this process may run on: its CPU affinity, which a container, ``taskset`` or a
    cgroup cpuset narrows, where ``os.cpu_count()`` counts every core of the machine."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
