"""What a build has to do: the documents folder compared with the manifest of the index.

Shared by ``build``, ``build --dry-run`` and ``status``; it reads file bytes (for hashes) but loads no
model and touches no index.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from indexer.config.models import Config
from indexer.errors import DataError
from indexer.index.manifest import Manifest
from indexer.ingestion.images import OCR_SUFFIXES
from indexer.ingestion.ocr import OCR_EXTRA
from indexer.ingestion.readers import FORMATS_EXTRA, ReadLimits

if TYPE_CHECKING:
    from indexer.ingestion.prepare import WorkItem
from indexer.ingestion.sources import Discovery, Refused, SourceFile, file_hash, settings_digest


@dataclass
class SyncPlan:
    current: dict[str, tuple[SourceFile, str]] = field(default_factory=dict)
    """Every readable-looking document: id -> (file, hash). Empty for records, which are no files
    (``plan_changes``)."""
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
    """Never read: outside the folder, too large, or gone meanwhile (see ``sources.discover``)."""
    unreadable: list[Refused] = field(default_factory=list)
    """Folders (id ending in ``/``) and files that exist but cannot be read now (permission denied,
    an I/O error): never taken for deleted."""
    kept: list[str] = field(default_factory=list)
    """Indexed documents that are unreadable now, or lie in an unreadable folder: left in the index
    as last built, neither deleted nor read."""

    def skipped_now(self) -> list[tuple[str, str]]:
        """(id, reason) of every file this plan skips without reading it and the index does not hold
        (an unreadable file the index holds is kept, not skipped)."""
        kept = set(self.kept)
        unreadable_files = [
            (r.doc_id, r.reason)
            for r in self.unreadable
            if not r.doc_id.endswith("/") and r.doc_id not in kept
        ]
        return (
            [(s.doc_id, unsupported_reason(s)) for s in self.unsupported]
            + [(r.doc_id, r.reason) for r in self.refused]
            + unreadable_files
        )

    @property
    def todo(self) -> list[str]:
        return self.added + self.updated + self.retried

    def unreadable_now(self) -> list[dict[str, str]]:
        """The build report's ``unreadable``: every folder and file that cannot be read now."""
        return [{"file": r.doc_id, "reason": r.reason} for r in self.unreadable]

    def changes(self) -> dict[str, list[str]]:
        # A retried file is new to the index, and counted in ``added`` (issue 30, item 11).
        return {"added": self.added + self.retried, "updated": self.updated, "deleted": self.deleted}


def chunk_settings_key(config: Config, suffix: str | None = None) -> str:
    """What, beside its bytes, decides a file's chunks and vectors; part of every file's hash. For
    a file whose extension ``data.readers`` names a reader, that reader too (its class and kwargs,
    secrets left out), so changing it reads those files again, and only those. For images and
    PDFs, ``data.ocr`` and ``data.ocr_languages`` too: they decide those files' text."""
    settings: dict[str, Any] = {
        "chunking": config.chunking.model_dump(),
        "passage_prefix": config.embedding.passage_prefix,
    }
    if suffix and suffix.lower() in OCR_SUFFIXES:
        settings["ocr"] = [config.data.ocr, config.data.ocr_languages]
    spec = config.data.readers.get(suffix.lower()) if suffix else None
    if spec is not None:
        settings["reader"] = spec.record()
    return settings_digest(settings)


def settings_keys(config: Config) -> Callable[[str], str]:
    """``chunk_settings_key`` by file extension, each computed once."""
    keys: dict[str, str] = {}

    def key(suffix: str) -> str:
        keyed = suffix.lower() in config.data.readers or suffix.lower() in OCR_SUFFIXES
        suffix = suffix.lower() if keyed else ""
        if suffix not in keys:
            keys[suffix] = chunk_settings_key(config, suffix or None)
        return keys[suffix]

    return key


def work_items(config: Config, plan: SyncPlan) -> list[WorkItem]:
    """The files ``plan`` has to (re)index, as the engines take them."""
    from indexer.ingestion.prepare import WorkItem

    key, limits = settings_keys(config), ReadLimits.of(config.data)
    items = []
    for doc_id in plan.todo:
        source, digest = plan.current[doc_id]
        items.append(
            WorkItem(
                doc_id, str(source.path.absolute()), digest, source.size, key(source.path.suffix), limits
            )
        )
    return items


def plan_sync(config: Config, discovery: Discovery, previous: Manifest | None) -> SyncPlan:
    key = settings_keys(config)
    limits = ReadLimits.of(config.data)
    current: dict[str, tuple[SourceFile, str]] = {}
    refused = list(discovery.refused)
    unreadable = list(discovery.unreadable)
    for source in discovery.sources:
        try:
            current[source.doc_id] = (source, file_hash(source.path, key(source.path.suffix)))
        except FileNotFoundError as exc:  # removed meanwhile: gone, like a file never listed
            refused.append(Refused(source.doc_id, f"cannot read ({exc.strerror or exc})"))
        except OSError as exc:  # permission denied, an I/O error: still there, maybe readable later
            unreadable.append(Refused(source.doc_id, f"cannot read ({exc.strerror or exc})"))
    plan = SyncPlan(
        current=current,
        unsupported=discovery.unsupported,
        refused=sorted(refused, key=lambda r: r.doc_id),
        unreadable=sorted(unreadable, key=lambda r: r.doc_id),
    )
    digests = {doc_id: digest for doc_id, (_, digest) in current.items()}
    return plan_changes(digests, previous, limits, plan)


def plan_changes(
    digests: Mapping[str, str], previous: Manifest | None, limits: ReadLimits, plan: SyncPlan | None = None
) -> SyncPlan:
    """Sort documents (id -> hash) into added, updated, unchanged, retried and still skipped, and
    what the index holds beside them into deleted, or kept when ``plan.unreadable`` says it is
    there but cannot be read now. Files (``plan_sync``) and text records (``records.py``) alike."""
    plan = plan if plan is not None else SyncPlan()
    files = previous.files if previous else {}
    skipped = previous.skipped if previous else {}
    for doc_id, digest in digests.items():
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
    unreadable_files = {r.doc_id for r in plan.unreadable}
    unreadable_folders = tuple(r.doc_id for r in plan.unreadable if r.doc_id.endswith("/"))
    for doc_id in files:
        if doc_id in digests:
            continue
        if doc_id in unreadable_files or doc_id.startswith(unreadable_folders):
            plan.kept.append(doc_id)
        else:
            plan.deleted.append(doc_id)
    return plan


def refuse_unreadable(plan: SyncPlan, input_dir: object) -> None:
    """``--strict``: a folder or file that cannot be read fails the build, before it changes anything."""
    if not plan.unreadable:
        return
    names = "; ".join(f"{r.doc_id}: {r.reason}" for r in plan.unreadable[:10])
    more = f" (and {len(plan.unreadable) - 10} more)" if len(plan.unreadable) > 10 else ""
    raise DataError(
        f"--strict: {len(plan.unreadable)} folder(s) or file(s) in {input_dir} cannot be read: "
        f"{names}{more}. Make them readable by the user running indexer, or exclude them "
        "(data.exclude). Nothing was changed: the index as last built still answers queries."
    )


def unsupported_reason(source: SourceFile) -> str:
    return f"unsupported file type {source.path.suffix or '(no extension)'!r}"


def _worth_retrying(previous: Manifest, doc_id: str, digest: str, limits: ReadLimits) -> bool:
    reason = previous.skipped[doc_id]
    return (
        previous.skipped_hashes.get(doc_id) != digest
        or FORMATS_EXTRA in reason
        or OCR_EXTRA in reason
        or limits.changed_since(reason)  # skipped for passing a bound that has been changed
    )
