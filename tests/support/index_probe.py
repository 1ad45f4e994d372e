"""Read an index's raw collection in a fresh process, bypassing the committed-only view.

A fresh process sees exactly what is on disk (a Chroma client caches state per process), which is
what a crash test must compare.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

_SCRIPT = """
import json, sys
from pathlib import Path
import chromadb
from chromadb.config import Settings
persist, base = sys.argv[1], sys.argv[2]
manifest = json.loads((Path(persist) / "indexer-manifest.json").read_text())
name = manifest.get("collection") or base
client = chromadb.PersistentClient(path=persist, settings=Settings(anonymized_telemetry=False))
names = [getattr(c, "name", c) for c in client.list_collections()]
got = client.get_collection(name).get(include=["metadatas"])
print(json.dumps({"collection": name, "collections": sorted(names), "ids": got["ids"],
                  "versions": [[m["doc_id"], m["file_hash"]] for m in got["metadatas"]]}))
"""


def probe(persist_dir: Path, collection: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(persist_dir), collection],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
