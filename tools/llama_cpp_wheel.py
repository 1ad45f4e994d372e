"""Build (once) and locate a portable llama-cpp-python wheel, cached under a key of its build flags.

Run before the project is installed, so it uses the standard library only.

Why not plain `pip install llama-cpp-python`: its sdist compiles with `-march=native`, which bakes in
every extension of the build machine (AMX on recent Xeons, whose kernels die with SIGILL where a VM
does not let worker threads use AMX), and pip's wheel cache ignores CMAKE_ARGS, so a wheel built
for one CPU or one set of flags is silently reused for another. Here the flags are explicit, chosen
by CPU *class* (never the exact CPU), AMX is always off, and the wheel lives in a folder named by a
hash of (version, flags, Python, platform): other flags always mean another folder and a new build.

    python tools/llama_cpp_wheel.py            # print the folder holding the wheel, building it if needed
    python tools/llama_cpp_wheel.py --describe # print the class and flags it would use

Classes (INDEXER_LLAMA_CPU overrides the automatic choice):
  x86-64-v3  AVX2, FMA, F16C, BMI2: any x86-64 CPU since 2013-2015 (Haswell, Zen 1). The Docker default.
  avx512     x86-64-v3 plus AVX-512 F/BW/VL/VBMI/VNNI/BF16 (Ice Lake, Sapphire Rapids without AMX, Zen 4+).
  generic    no x86 extension beyond SSE4.2 (also used on non-x86 machines, where ggml picks its own).
INDEXER_LLAMA_CMAKE_ARGS replaces the flags entirely, e.g. "-DGGML_CUDA=on" for an NVIDIA GPU.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import platform
import subprocess
import sys
import sysconfig
from pathlib import Path

VERSION = "0.3.36"
NO_AMX = ["-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
V3 = ["-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_BMI2=ON"]
AVX512 = [
    "-DGGML_AVX512=ON",
    "-DGGML_AVX512_VBMI=ON",
    "-DGGML_AVX512_VNNI=ON",
    "-DGGML_AVX512_BF16=ON",
]
CLASS_FLAGS = {
    "generic": [
        "-DGGML_NATIVE=OFF",
        "-DGGML_AVX=OFF",
        "-DGGML_AVX2=OFF",
        "-DGGML_FMA=OFF",
        "-DGGML_F16C=OFF",
        "-DGGML_BMI2=OFF",
        *NO_AMX,
    ],
    "x86-64-v3": ["-DGGML_NATIVE=OFF", *V3, *NO_AMX],
    "avx512": ["-DGGML_NATIVE=OFF", *V3, *AVX512, *NO_AMX],
}
# llava/mtmd is multimodal only; skipping it saves a third of the compile.
COMMON = ["-DLLAVA_BUILD=OFF"]
AVX512_NEEDS = {"avx512f", "avx512bw", "avx512vl", "avx512vbmi", "avx512_vnni", "avx512_bf16"}
V3_NEEDS = {"avx2", "fma", "f16c", "bmi2"}


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_class() -> str:
    chosen = os.environ.get("INDEXER_LLAMA_CPU", "").strip()
    if chosen:
        if chosen not in CLASS_FLAGS:
            sys.exit(f"INDEXER_LLAMA_CPU={chosen!r}: expected one of {', '.join(CLASS_FLAGS)}")
        return chosen
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return "generic"
    flags = cpu_flags()
    if flags >= AVX512_NEEDS:
        return "avx512"
    if flags >= V3_NEEDS:
        return "x86-64-v3"
    return "generic"


def cmake_args() -> tuple[str, list[str]]:
    custom = os.environ.get("INDEXER_LLAMA_CMAKE_ARGS", "").split()
    if custom:
        return "custom", [*custom, *COMMON]
    klass = cpu_class()
    if klass == "generic" and platform.machine().lower() not in {"x86_64", "amd64"}:
        return klass, ["-DGGML_NATIVE=OFF", *COMMON]
    return klass, [*CLASS_FLAGS[klass], *COMMON]


def wheel_dir(klass: str, args: list[str]) -> Path:
    key = "\n".join([VERSION, sys.implementation.cache_tag, sysconfig.get_platform(), *args])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    root = Path(os.environ.get("INDEXER_WHEEL_CACHE") or Path.home() / ".cache" / "indexer" / "wheels")
    return root / f"llama-cpp-python-{VERSION}-{klass}-{digest}"


def build(target: Path, args: list[str]) -> None:
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    for old in partial.glob("*.whl"):
        old.unlink()
    env = dict(os.environ, CMAKE_ARGS=" ".join(args), FORCE_CMAKE="1")
    print(f"Compiling llama-cpp-python {VERSION} with {' '.join(args)} (a few minutes, once)", flush=True)
    # --no-cache-dir: pip's wheel cache is keyed by the sdist alone, never by CMAKE_ARGS.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-cache-dir",
            "--no-binary",
            "llama-cpp-python",
            f"llama-cpp-python=={VERSION}",
            "-w",
            str(partial),
        ],
        check=True,
        env=env,
    )
    (partial / "CMAKE_ARGS").write_text(" ".join(args) + "\n")
    partial.rename(target)  # atomic: an interrupted build never leaves a half folder behind


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--describe", action="store_true", help="print the CPU class and flags only")
    options = parser.parse_args()
    klass, args = cmake_args()
    target = wheel_dir(klass, args)
    if options.describe:
        print(f"class: {klass}\nflags: {' '.join(args)}\nwheel folder: {target}")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two set-ups at once: one compiles, the other waits
        if not any(target.glob("*.whl")):
            build(target, args)
    print(target)


if __name__ == "__main__":
    main()
