"""``indexer status``: what the index holds, and what a build would change.

Reads the manifest and hashes the files; loads no model (the config is checked against the
manifest by name, fingerprint, normalisation, prefixes and chunking, which need no torch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from indexer.config.models import Config
from indexer.index.index import Index
from indexer.index.manifest import compatibility_problems
from indexer.index.store import VectorIndexDamaged
from indexer.ingestion.plan import plan_sync
from indexer.ingestion.sources import discover


@dataclass
class IndexStatus:
    index: str
    collection: str
    built: bool
    manifest: dict[str, Any] = field(default_factory=dict)
    documents: int = 0
    chunks: int = 0
    chunks_in_store: int | None = None
    interrupted: bool = False
    """A build stopped midway; the next build finishes its clean-up (queries are unaffected)."""
    compatible: bool = True
    problems: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    """Folders (``name/``) and files that cannot be read now, with why: never taken for deleted."""
    kept: list[str] = field(default_factory=list)
    """Indexed documents a build leaves as they are, because they cannot be read now."""

    store_missing: bool = False
    """The manifest names an index whose vectors are gone (the database file or the collection)."""
    store_damaged: str | None = None
    """Why Chroma cannot read the index's vector segment (the next build builds it again)."""

    @property
    def up_to_date(self) -> bool:
        return self.built and not (
            self.new
            or self.changed
            or self.deleted
            or self.interrupted
            or self.store_missing
            or self.store_damaged
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["up_to_date"] = self.up_to_date
        return data


def index_status(config: Config, index: Index) -> IndexStatus:
    from indexer.components.embedding import config_identity

    manifest = index.current()  # the view collection_name() reads too
    status = IndexStatus(
        index=index.location,
        collection=index.collection_name(),
        built=manifest is not None,
    )
    discovery = discover(config.data)
    plan = plan_sync(config, discovery, manifest)
    status.new = plan.added + plan.retried  # retried: changed since it was skipped
    status.changed, status.deleted, status.unchanged = plan.updated, plan.deleted, len(plan.unchanged)
    status.skipped = dict(plan.skipped_now())
    status.unreadable = {r.doc_id: r.reason for r in plan.unreadable}
    status.kept = plan.kept
    if manifest is None:
        return status
    status.manifest = manifest.describe()
    status.documents, status.chunks = len(manifest.files), manifest.chunk_count
    status.skipped = {**manifest.skipped, **status.skipped}
    status.problems = compatibility_problems(
        manifest, config_identity(config.embedding), config.chunking.model_dump()
    )
    status.compatible = not status.problems
    store = index.chunk_store(create=False)  # never creates a database or a collection
    if store is not None:
        try:
            status.chunks_in_store = store.count()
        except VectorIndexDamaged as exc:
            status.store_damaged = str(exc)
    else:
        status.store_missing = True
    status.interrupted = bool(manifest.pending) or (
        status.chunks_in_store is not None and status.chunks_in_store != status.chunks
    )
    return status
