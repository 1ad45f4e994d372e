"""Cold start: what a CLI call costs before it does anything, against a bare interpreter and
against the same work warm, all measured in this run.

    python -m benchmarks.cold_start               # 5 rounds
    python -m benchmarks.cold_start --rounds 9

Each cold call is a new process, as a user's shell starts it: ``python -c pass`` (the floor no
CLI can go under), ``indexer --help``, and ``indexer query CONFIG Q --retrieve-only`` on the sample
index built here in a temporary folder. Its warm twin is the same retrieval repeated inside one
``Indexer``. Rounds take turns between the calls, so a noisy neighbour slows each about equally;
medians are reported, with each cold call as a ratio to the bare interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

QUESTION = "How often should the silica gel desiccant pack in the mast be replaced?"


def _wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - started


def measure(rounds: int) -> dict[str, Any]:
    from indexer import Indexer
    from tests.conftest import SAMPLE_DIR, write_config

    with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
        config = write_config(Path(tmp), SAMPLE_DIR, llm={"provider": "none"})
        warm = Indexer.from_config(config)
        warm.build()
        calls = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "indexer --help": [sys.executable, "-m", "indexer", "--help"],
            "query --retrieve-only (cold)": [
                sys.executable, "-m", "indexer", "query", str(config), QUESTION, "--retrieve-only",
            ],
        }
        times: dict[str, list[float]] = {name: [] for name in calls}
        times["query --retrieve-only (warm, in-process)"] = []
        warm.retrieve(QUESTION)
        for _ in range(rounds):
            for name, argv in calls.items():
                times[name].append(_wall(argv))
            started = time.perf_counter()
            warm.retrieve(QUESTION)
            times["query --retrieve-only (warm, in-process)"].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    floor = medians["python -c pass"]
    return {
        "rounds": rounds,
        "median_s": {name: round(value, 3) for name, value in medians.items()},
        "ratio_to_bare_interpreter": {name: round(value / floor, 1) for name, value in medians.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = parser.parse_args()

    from benchmarks.machine import cpu_description

    report = {"cpu": cpu_description(), **measure(args.rounds)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    cpu = report["cpu"]
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, load {cpu['load_1min']}")
    print(f"CPU flags: {' '.join(cpu['flags'])}")
    print(f"{'call':45} {'median s':>9} {'x bare python':>14}")
    for name, seconds in report["median_s"].items():
        print(f"{name:45} {seconds:9.3f} {report['ratio_to_bare_interpreter'][name]:14.1f}")


if __name__ == "__main__":
    main()
