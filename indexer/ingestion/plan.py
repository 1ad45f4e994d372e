"""What a build has to do: the documents folder compared with the manifest of the index.

Shared by ``build``, ``build --dry-run`` and ``status``; it reads file bytes (for hashes) but loads no
model and touches no index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from indexer.config.models import Config
from indexer.index.manifest import Manifest
from indexer.ingestion.readers import FORMATS_EXTRA, ReadLimits
from indexer.ingestion.sources import Discovery, Refused, SourceFile, file_hash, settings_digest


@dataclass
class SyncPlan:
    current: dict[str, tuple[SourceFile, str]]
    """Every readable-looking document: id -> (file, hash)."""
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    """Skipped before and changed since (or skipped for want of an extra): read again."""
    still_skipped: list[str] = field(default_factory=list)
    """Skipped before and unchanged: not read again, listed again."""
    unsupported: list[SourceFile] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    """Never read: outside the folder, too large, or cannot be opened (see ``sources.discover``)."""

    def skipped_now(self) -> list[tuple[str, str]]:
        """(id, reason) of every file this plan skips without reading it."""
        return [(s.doc_id, unsupported_reason(s)) for s in self.unsupported] + [
            (r.doc_id, r.reason) for r in self.refused
        ]

    @property
    def todo(self) -> list[str]:
        return self.added + self.updated + self.retried

    def changes(self) -> dict[str, list[str]]:
        return {"added": self.added, "updated": self.updated, "deleted": self.deleted}


def chunk_settings_key(config: Config) -> str:
    """What, beside its bytes, decides a file's chunks and vectors; part of every file's hash."""
    return settings_digest(
        {"chunking": config.chunking.model_dump(), "passage_prefix": config.embedding.passage_prefix}
    )


def plan_sync(config: Config, discovery: Discovery, previous: Manifest | None) -> SyncPlan:
    key = chunk_settings_key(config)
    limits = ReadLimits.of(config.data)
    current: dict[str, tuple[SourceFile, str]] = {}
    refused = list(discovery.refused)
    for source in discovery.sources:
        try:
            current[source.doc_id] = (source, file_hash(source.path, key))
        except OSError as exc:  # permission denied, removed meanwhile, an I/O error
            refused.append(Refused(source.doc_id, f"cannot read ({exc.strerror or exc})"))
    files = previous.files if previous else {}
    skipped = previous.skipped if previous else {}
    plan = SyncPlan(
        current=current,
        unsupported=discovery.unsupported,
        refused=sorted(refused, key=lambda r: r.doc_id),
    )
    for doc_id, (_, digest) in current.items():
        record = files.get(doc_id)
        if record is None:
            if doc_id not in skipped:
                plan.added.append(doc_id)
            elif previous is not None and _worth_retrying(previous, doc_id, digest, limits):
                plan.retried.append(doc_id)
            else:
                plan.still_skipped.append(doc_id)
        elif record.hash != digest:
            plan.updated.append(doc_id)
        else:
            plan.unchanged.append(doc_id)
    plan.deleted = [d for d in files if d not in current]
    return plan


def unsupported_reason(source: SourceFile) -> str:
    return f"unsupported file type {source.path.suffix or '(no extension)'!r}"


def _worth_retrying(previous: Manifest, doc_id: str, digest: str, limits: ReadLimits) -> bool:
    reason = previous.skipped[doc_id]
    return (
        previous.skipped_hashes.get(doc_id) != digest
        or FORMATS_EXTRA in reason
        or limits.changed_since(reason)  # skipped for passing a bound that has been changed
    )
