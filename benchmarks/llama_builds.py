"""llama.cpp builds compared on real quantized models: prompt evaluation and generation tokens/s.

    python -m benchmarks.llama_builds                       # the portable classes this CPU can run
    python -m benchmarks.llama_builds --classes x86-64-v3   # one class
    python -m benchmarks.llama_builds --variant nollamafile="-DGGML_NATIVE=OFF -DGGML_AVX2=ON ..."

Each build is the wheel that tools/llama_cpp_wheel.py makes (built here if it is not cached yet),
unpacked into a folder of its own and run in a child process with that folder first on the path,
so builds never mix in one process. Builds take turns, run after run, so a change in the machine's
load hits them alike. Per model and build: prompt evaluation (a ~600-token RAG prompt from an empty
KV cache, as llama.cpp's pp test) and generation (tokens/s after the first, as its tg test), the
median of --runs runs, and time to first token for the same prompt; each build with flash
attention off and on. The machine's load is printed first: on a shared, busy CPU every figure
drops, and OpenMP's thread barriers suffer most.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from benchmarks.machine import add_markdown_flag, markdown_table

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "llama_cpp_wheel.py"

# Runs inside the child: stdlib + the unpacked llama_cpp + numpy from the venv.
_CHILD = r"""
import json, os, sys, time
import llama_cpp
path, n_prompt, n_gen, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
flash_attn = sys.argv[5] == "1"
llm = llama_cpp.Llama(model_path=path, n_ctx=4096, n_threads=threads, n_threads_batch=threads,
                      n_batch=512, n_ubatch=512, flash_attn=flash_attn, verbose=False, seed=0)
words = ("the station crew checks each system and records the result in the log before the shift "
         "ends while the mast antenna and the desiccant pack are inspected every month ").split()
text, tokens = "", []
while len(tokens) < n_prompt:
    text += " ".join(words) + " "
    tokens = llm.tokenize(text.encode(), add_bos=True, special=False)
tokens = tokens[:n_prompt]
llm.reset()
t0 = time.perf_counter()
llm.eval(tokens)
prompt_s = time.perf_counter() - t0
# Time to first token and generation, from an empty KV cache as a question would start.
llm.reset()
count, first = 0, None
t1 = time.perf_counter()
for token in llm.generate(tokens, temp=0.0, reset=True):
    count += 1
    if first is None:
        first = time.perf_counter()
    if count >= n_gen:
        break
end = time.perf_counter()
print(json.dumps({
    "prompt_tokens_per_s": n_prompt / prompt_s,
    "gen_tokens_per_s": (count - 1) / (end - first),
    "ttft_s": first - t1,
    "system_info": llama_cpp.llama_print_system_info().decode(),
}))
"""


def wheel_folder(env: dict[str, str]) -> Path:
    out = subprocess.run(
        [sys.executable, str(TOOL)], env={**os.environ, **env}, check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def unpack(folder: Path, into: Path) -> Path:
    wheel = next(folder.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(into)
    return into


def run_child(
    site: Path, model: Path, n_prompt: int, n_gen: int, threads: int, flash_attn: bool
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    args = [str(model), str(n_prompt), str(n_gen), str(threads), "1" if flash_attn else "0"]
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def models(names: list[str]) -> dict[str, Path]:
    from indexer.components.llm import bundled_model_path

    return {name: bundled_model_path(name) for name in names}


def main() -> None:
    from benchmarks.machine import cpu_description

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--classes", nargs="*", default=None, help="CPU classes (default: all this CPU runs)")
    parser.add_argument(
        "--variant", action="append", default=[], help="NAME=CMAKE_ARGS, built and compared too"
    )
    parser.add_argument("--models", nargs="*", default=["smollm2", "gemma3-270m"])
    parser.add_argument("--prompt-tokens", type=int, default=1200, help="~ a 4-passage SmolLM2 prompt")
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    add_markdown_flag(parser)
    args = parser.parse_args()

    cpu = cpu_description()
    print(json.dumps({"cpu": cpu}), flush=True)
    classes = args.classes
    if classes is None:
        classes = ["x86-64-v3"] + (["avx512"] if "avx512f" in cpu["flags"] else [])
    builds: dict[str, dict[str, str]] = {k: {"INDEXER_LLAMA_CPU": k} for k in classes}
    for variant in args.variant:
        name, _, flags = variant.partition("=")
        builds[name] = {"INDEXER_LLAMA_CMAKE_ARGS": flags}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-llama-") as tmp:
        sites = {name: unpack(wheel_folder(env), Path(tmp) / name) for name, env in builds.items()}
        # Each build without and with flash attention (llm.flash_attn, a run-time setting).
        setups = [(build, fa) for build in builds for fa in (False, True)]
        for model_name, model in models(args.models).items():
            for _ in range(args.runs):
                for build, fa in setups:  # setups take turns, run after run
                    run = run_child(
                        sites[build], model, args.prompt_tokens, args.gen_tokens, args.threads, fa
                    )
                    label = f"{build}{' +flash_attn' if fa else ''}"
                    results.setdefault(model_name, {}).setdefault(label, []).append(run)
    report: dict[str, Any] = {"cpu": cpu, "threads": args.threads, "prompt_tokens": args.prompt_tokens}
    baseline = next(iter(builds))  # the first build, flash attention off
    for model_name, per_build in results.items():
        rows = {}
        for build, runs in per_build.items():
            rows[build] = {
                "prompt_tokens_per_s": round(statistics.median(r["prompt_tokens_per_s"] for r in runs), 1),
                "gen_tokens_per_s": round(statistics.median(r["gen_tokens_per_s"] for r in runs), 1),
                "ttft_ms": round(statistics.median(r["ttft_s"] for r in runs) * 1000),
                "system_info": runs[0]["system_info"].strip(),
            }
        base = rows[baseline]
        for row in rows.values():
            row["prompt_vs_baseline"] = round(row["prompt_tokens_per_s"] / base["prompt_tokens_per_s"], 2)
            row["gen_vs_baseline"] = round(row["gen_tokens_per_s"] / base["gen_tokens_per_s"], 2)
        report[model_name] = rows
        print(json.dumps({model_name: rows}), flush=True)
    print(json.dumps(report, indent=2))
    if args.markdown:
        table = [
            [
                model_name,
                f"`{build}`",
                row["prompt_tokens_per_s"],
                row["prompt_vs_baseline"],
                row["gen_tokens_per_s"],
                f"{row['ttft_ms'] / 1000:.1f} s",
            ]
            for model_name in results
            for build, row in report[model_name].items()
        ]
        columns = [
            "model",
            "build",
            "prompt tokens/s",
            "vs baseline",
            "generation tokens/s",
            "time to first token",
        ]
        print(markdown_table(columns, table))


if __name__ == "__main__":
    main()
