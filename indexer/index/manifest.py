"""The manifest: what an index was built with and from, stored beside the vectors.

It makes an index self-describing (a query can check it speaks the same vector space) and is the
record incremental builds diff against. It is written atomically (temp file + rename), so a build
killed mid-write leaves the previous manifest whole.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from indexer.errors import IndexMismatchError, StoreError

MANIFEST_FILE = "indexer-manifest.json"
FORMAT_VERSION = 1


class FileRecord(BaseModel):
    hash: str
    chunks: int
    size: int


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    embedding: dict[str, Any]
    chunking: dict[str, Any]
    loader: dict[str, Any]
    config_hash: str = ""
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""
    build_seconds: float = 0.0
    files: dict[str, FileRecord] = Field(default_factory=dict)
    skipped: dict[str, str] = Field(default_factory=dict)

    @property
    def chunk_count(self) -> int:
        return sum(r.chunks for r in self.files.values())

    def counts(self) -> dict[str, int]:
        return {"documents": len(self.files), "chunks": self.chunk_count}

    def touch(self) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self.created_at = self.created_at or now
        self.updated_at = now


class ManifestFile:
    """The manifest of an embedded index, as a JSON file in its persist folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / MANIFEST_FILE

    def load(self) -> Manifest | None:
        if not self.path.is_file():
            return None
        return Manifest.model_validate_json(self.path.read_text(encoding="utf-8"))

    def save(self, manifest: Manifest) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".manifest-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(manifest.model_dump(mode="json"), fh, indent=2, sort_keys=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


def check_compatible(manifest: Manifest, embedding: dict[str, Any], chunking: dict[str, Any] | None) -> None:
    """Refuse to mix vector spaces: fail before any work if the config disagrees with the index.

    ``chunking`` is checked only when appending (a query does not chunk).
    """
    problems = []
    for key in ("name", "dimension", "fingerprint", "normalize", "query_prefix", "passage_prefix"):
        built, now = manifest.embedding.get(key), embedding.get(key)
        if built != now:
            problems.append(f"embedding {key}: index has {built!r}, config gives {now!r}")
    if chunking is not None:
        for key, now in chunking.items():
            built = manifest.chunking.get(key)
            if built != now:
                problems.append(f"chunking.{key}: index has {built!r}, config gives {now!r}")
    if problems:
        raise IndexMismatchError(
            "the index was built with different settings than this config:\n  "
            + "\n  ".join(problems)
            + "\nQuerying it would mix vector spaces. Rebuild it with `indexer build CONFIG --rebuild`"
            " (or point vector_store at another folder/collection)."
        )


class ManifestFileForServer(ManifestFile):
    """The manifest of an index on a Chroma server, kept on that server so every machine sharing
    the index sees it: one record in a side collection (Chroma requires a vector; it is a dummy)."""

    _RECORD_ID = "manifest"

    def __init__(self, client: Any, collection: str) -> None:
        self._client = client
        self._name = f"{collection}-manifest"
        self.path = Path(f"chroma://{self._name}")

    def load(self) -> Manifest | None:
        try:
            side = self._client.get_or_create_collection(self._name)
            got = side.get(ids=[self._RECORD_ID], include=["documents"])
        except Exception as exc:  # the server went away or refused us
            raise StoreError(
                f"cannot read the index manifest ({self._name}) from the Chroma server: {exc}"
            ) from None
        if not got["ids"]:
            return None
        return Manifest.model_validate_json(got["documents"][0])

    def save(self, manifest: Manifest) -> None:
        try:
            side = self._client.get_or_create_collection(self._name)
            side.upsert(
                ids=[self._RECORD_ID],
                documents=[manifest.model_dump_json()],
                embeddings=[[0.0]],
            )
        except Exception as exc:
            raise StoreError(
                f"cannot write the index manifest ({self._name}) to the Chroma server: {exc}"
            ) from None

    def delete(self) -> None:
        if self._name in {getattr(c, "name", c) for c in self._client.list_collections()}:
            self._client.delete_collection(self._name)
