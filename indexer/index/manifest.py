"""The manifest: what an index was built with and from, stored beside the vectors.

It makes an index self-describing (a query can check it speaks the same vector space), it is the
record incremental builds diff against, and it is the commit point of every build: a chunk counts
as part of the index only once the manifest names its document at its hash (``ChunkStore.search``
hides the rest). It is written atomically (temp file + fsync + rename), so a build killed mid-write
leaves the previous manifest whole.

``pending`` is the build's intent log: documents whose chunks in the collection may not match
``files`` yet (a version being written, an old version or a deleted file still to remove). It is
saved before the collection is touched, so the next build can finish the clean-up whatever moment
a build was killed at.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from indexer.errors import IndexMismatchError, StoreError
from indexer.index import chroma
from indexer.index.store import Committed
from indexer.index.write_errors import write_error

if TYPE_CHECKING:
    from indexer.components.embedding import EmbeddingIdentity

MANIFEST_FILE = "indexer-manifest.json"
FORMAT_VERSION = 2
# The settings an index's vectors depend on; a config must agree on all of them to query or append.
EMBEDDING_KEYS = (
    "name",
    "dimension",
    "fingerprint",
    "normalize",
    "query_prefix",
    "passage_prefix",
    "quantization",
)


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
    collection: str | None = Field(
        None, description="The Chroma collection holding the vectors (None: the configured name)."
    )
    generation: int = Field(0, description="Bumped by every --rebuild, which writes a new collection.")
    revision: int = Field(
        0, description="Bumped by every save: a reader compares it (or the file's stat) to see a commit."
    )
    vector_index: dict[str, Any] = Field(
        default_factory=dict,
        description="The collection's HNSW settings (search_ef, construction_ef, m), as Chroma has them.",
    )
    created_at: str = ""
    updated_at: str = ""
    build_seconds: float = 0.0
    last_build: dict[str, Any] = Field(default_factory=dict)
    documents: int = 0
    chunks: int = 0
    files: dict[str, FileRecord] = Field(default_factory=dict)
    skipped: dict[str, str] = Field(default_factory=dict)
    skipped_hashes: dict[str, str] = Field(
        default_factory=dict, description="Hash of each skipped file, so an unchanged one is not read again."
    )
    pending: list[str] = Field(default_factory=list)
    retired: list[str] = Field(
        default_factory=list,
        description="Collections of earlier generations, to drop (leftovers of --rebuild).",
    )

    @property
    def chunk_count(self) -> int:
        return sum(r.chunks for r in self.files.values())

    def counts(self) -> dict[str, int]:
        return {"documents": len(self.files), "chunks": self.chunk_count}

    def committed(self) -> Committed:
        """Each document's hash and the chunk total: what queries may show."""
        return Committed({doc_id: r.hash for doc_id, r in self.files.items()})

    def touch(self) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self.created_at = self.created_at or now
        self.updated_at = now

    def describe(self) -> dict[str, Any]:
        """Everything but the per-file records: what ``indexer status`` shows."""
        data = self.model_dump(
            mode="json", exclude={"files", "skipped", "skipped_hashes", "pending", "retired"}
        )
        data.update(self.counts())
        return data

    def serialise(self) -> str:
        self.documents, self.chunks = len(self.files), self.chunk_count
        # pydantic's own serialiser: json.dumps with an indent runs in Python, ten times slower
        # (30 ms for 2,000 files), and an unchanged re-run saves the manifest twice.
        return self.model_dump_json(indent=1)


class ManifestDamaged(StoreError):
    """The manifest cannot be understood; ``--rebuild`` replaces it (and only it)."""


def parse_manifest(text: str, where: str) -> Manifest:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestDamaged(
            f"the index manifest {where} is not valid JSON ({exc}); rebuild with --rebuild"
        ) from None
    version = data.get("format_version", 1) if isinstance(data, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ManifestDamaged(
            f"the index manifest {where} has format {version}, newer than this indexer understands "
            f"({FORMAT_VERSION}): upgrade indexer, or rebuild with --rebuild"
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestDamaged(
            f"the index manifest {where} is damaged ({exc.errors()[0]['msg']}); rebuild with --rebuild"
        ) from None


class ManifestFile:
    """The manifest of an embedded index, as a JSON file in its persist folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / MANIFEST_FILE

    def load(self) -> Manifest | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError as exc:
            raise ManifestDamaged(
                f"the index manifest {self.path} is not UTF-8 text ({exc.reason}); rebuild with --rebuild"
            ) from None
        except OSError as exc:  # persist_dir is a file, or unreadable
            raise write_error(exc, "read the index manifest", self.path.parent) from None
        return parse_manifest(text, str(self.path))

    def set_aside(self) -> Path | None:
        """Keep a damaged manifest beside the index (one copy) before it is replaced."""
        target = self.path.with_name(self.path.name + ".damaged")
        try:
            os.replace(self.path, target)
        except FileNotFoundError:
            return None
        return target

    def version_token(self) -> Any:
        """Changes whenever the manifest is replaced; ``None`` when it cannot tell (always reload)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return ("missing",)
        except OSError:  # persist_dir is a file, or unreadable: load() says so
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def save(self, manifest: Manifest) -> None:
        manifest.revision += 1
        try:
            self._save(manifest)
        except OSError as exc:  # a full disk, a read-only folder: the old manifest stays whole
            raise write_error(exc, "save the index manifest", self.path.parent) from None

    def _save(self, manifest: Manifest) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".manifest-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(manifest.serialise())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (power loss), where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def compatibility_problems(
    manifest: Manifest, identity: EmbeddingIdentity, chunking: dict[str, Any] | None
) -> list[str]:
    """What differs between the index and the config; fields ``identity`` does not know yet are not
    checked (``indexer status`` checks what it knows without loading the model)."""
    problems = []
    embedding = identity.record()
    for key in EMBEDDING_KEYS:
        # A key the index lacks is not known yet (the first build records the dimension when the
        # model loads); a key the config lacks is not checked (status loads no model).
        if key not in embedding or key not in manifest.embedding:
            continue
        built, now = manifest.embedding.get(key), embedding.get(key)
        if built != now:
            problems.append(f"embedding {key}: index has {built!r}, config gives {now!r}")
    if chunking is not None:
        for key, now in chunking.items():
            built = manifest.chunking.get(key)
            if built != now:
                problems.append(f"chunking.{key}: index has {built!r}, config gives {now!r}")
    return problems


def check_compatible(
    manifest: Manifest, identity: EmbeddingIdentity, chunking: dict[str, Any] | None
) -> None:
    """Refuse to mix vector spaces: fail before any work if the config disagrees with the index.

    ``chunking`` is checked only when appending (a query does not chunk).
    """
    problems = compatibility_problems(manifest, identity, chunking)
    if problems:
        raise IndexMismatchError(
            "the index was built with different settings than this config:\n  "
            + "\n  ".join(problems)
            + "\nQuerying it would mix vector spaces. Rebuild it with `indexer build CONFIG --rebuild`"
            " (or point vector_store at another folder/collection)."
        )


class ManifestFileForServer(ManifestFile):
    """The manifest of an index on a Chroma server, kept on that server so every machine sharing
    the index sees it: one record in a side collection (``chroma.side_collection``).
    A single-record upsert is atomic, so it is a commit point like the file's rename."""

    _RECORD_ID = "manifest"

    def __init__(self, client: Any, collection: str) -> None:
        self._client = client
        self._name = f"{collection}-manifest"
        self._side: Any = None  # the side collection's handle, kept: a question costs one read
        self.path = Path(f"chroma://{self._name}")

    def _on_side(self, action: Callable[[Any], Any]) -> Any:
        """``action(side collection)``, once more with a new handle if the kept one fails (the
        collection was dropped and made again, or the server restarted empty)."""
        if self._side is not None:
            try:
                return action(self._side)
            except Exception:
                self._side = None
        self._side = chroma.side_collection(self._client, self._name)
        return action(self._side)

    def load(self) -> Manifest | None:
        try:
            got = self._on_side(lambda side: side.get(ids=[self._RECORD_ID], include=["documents"]))
        except Exception as exc:  # the server went away or refused us
            raise StoreError(
                f"cannot read the index manifest ({self._name}) from the Chroma server: {exc}"
            ) from None
        if not got["ids"]:
            return None
        return parse_manifest(got["documents"][0], str(self.path))

    def version_token(self) -> Any:
        """The revision saved beside the manifest: one small read instead of the whole record."""
        try:
            got = self._on_side(lambda side: side.get(ids=[self._RECORD_ID], include=["metadatas"]))
        except Exception:  # load() reports the server's trouble
            return None
        if not got["ids"]:
            return ("missing",)
        meta = (got["metadatas"] or [None])[0] or {}
        return meta.get("revision")  # None for a manifest saved before revisions: always reload

    def save(self, manifest: Manifest) -> None:
        manifest.revision += 1
        record = manifest.serialise()
        try:
            self._on_side(
                lambda side: side.upsert(
                    ids=[self._RECORD_ID],
                    documents=[record],
                    metadatas=[{"revision": manifest.revision}],
                    embeddings=[chroma.SIDE_RECORD_VECTOR],
                )
            )
        except Exception as exc:
            raise StoreError(
                f"cannot write the index manifest ({self._name}) to the Chroma server: {exc}"
            ) from None


class CommittedView:
    """The committed manifest as queries should see it, re-read only when the file changed, so a
    long-running server follows builds made by other processes."""

    def __init__(self, manifest_file: ManifestFile) -> None:
        self._file = manifest_file
        self._token: Any = object()
        self._manifest: Manifest | None = None
        self._committed: Committed | None = None

    def current(self) -> Manifest | None:
        token = self._file.version_token()
        if token is None or token != self._token:
            manifest = self._file.load()
            if manifest is not None and self._manifest is not None:
                _same_vector_space(self._manifest, manifest, self._file)
            self._manifest = manifest
            self._committed = manifest.committed() if manifest is not None else None
            self._token = token
        return self._manifest

    def committed(self) -> Committed | None:
        self.current()
        return self._committed

    def revision(self) -> Any:
        """Changes whenever the committed state seen by ``current()`` does."""
        manifest = self.current()
        return (self._token, manifest.revision if manifest is not None else None, id(manifest))


def _same_vector_space(before: Manifest, now: Manifest, where: ManifestFile) -> None:
    """A process that checked its config against the index must not follow a ``--rebuild`` made
    elsewhere with another model: its query vectors would land in a different space."""
    changed = [
        f"embedding {key}: was {before.embedding.get(key)!r}, now {now.embedding.get(key)!r}"
        for key in EMBEDDING_KEYS
        if key in before.embedding and key in now.embedding and before.embedding[key] != now.embedding[key]
    ]
    if changed:
        raise IndexMismatchError(
            f"the index at {where.path.parent} was rebuilt with other embedding settings while this "
            "process was using it (" + "; ".join(changed) + "). Open it again with a matching config."
        )
