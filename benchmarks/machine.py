"""The machine every benchmark figure was measured on, printed beside the figures."""

from __future__ import annotations

import os
from typing import Any

# The SIMD extensions that decide embedding and llama.cpp speed on x86.
_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_description() -> dict[str, Any]:
    """CPU model, usable cores, the SIMD flags that matter here, and the load while measuring."""
    from indexer.cpu import cpu_count, cpu_flags, cpu_model

    flags = cpu_flags()
    return {
        "model": cpu_model(),
        "cores": cpu_count(),
        "flags": [f for f in _FLAGS if f in flags],
        "load_1min": round(os.getloadavg()[0], 2),
    }
