"""A generated corpus of plain-text files: deterministic, distinct enough per file to retrieve."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

WORDS = [
    "anemometer",
    "barometer",
    "calibration",
    "sensor",
    "mast",
    "cable",
    "gauge",
    "humidity",
    "rain",
    "wind",
    "solar",
    "panel",
    "battery",
    "logger",
    "firmware",
    "antenna",
    "bracket",
    "radiation",
    "shield",
    "desiccant",
    "enclosure",
    "voltage",
    "pressure",
    "temperature",
    "station",
    "relay",
    "modem",
    "heater",
    "valve",
    "filter",
    "pump",
    "tower",
    "beacon",
]


def write_corpus(folder: Path, files: int, sentences: int = 40, seed: int = 7) -> list[Path]:
    """``files`` text files of ``sentences`` sentences each, in two sub-folders."""
    rng = random.Random(seed)
    written = []
    for n in range(files):
        path = folder / f"part{n % 2}" / f"note_{n:04d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for s in range(sentences):
            words = rng.sample(WORDS, 9)
            lines.append(f"Note {n} item {s}: the {' '.join(words)} reading is {rng.randint(1, 999)}.")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)
    return written


def work_items(folder: Path) -> list[Any]:
    """Every regular file below ``folder`` as a build's work item (hashed as a plan hashes it)."""
    from indexer.ingestion.prepare import WorkItem

    items = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        doc_id = path.relative_to(folder).as_posix()
        items.append(WorkItem(doc_id, str(path), hashlib.sha256(data).hexdigest(), len(data)))
    return items
