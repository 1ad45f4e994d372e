"""Commands that make and inspect the index: ``build``, ``status`` and ``watch``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from indexer.cli.options import ConfigArg, JsonOpt, SetOpt
from indexer.cli.output import echo
from indexer.cli.running import ctrl_c_ends_the_process, open_indexer, run


def build(
    config: ConfigArg,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Start from an empty index.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; touch nothing.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on any file that cannot be read, instead of skipping it.")
    ] = False,
) -> None:
    """Load, chunk, embed and persist the documents of CONFIG (only what changed)."""
    from indexer.progress import should_show

    def work() -> None:
        ix = open_indexer(config, set_)
        summary = ix.build(
            rebuild=rebuild, dry_run=dry_run, strict=strict, show_progress=should_show(quiet=json_out)
        )
        if json_out:
            echo(json.dumps(summary.to_dict()))
            return
        verb = "Would index" if dry_run else "Indexed"
        echo(
            f"{verb} {summary.documents} documents, {summary.chunks} chunks in {summary.seconds:.1f} s "
            f"(added {summary.added}, updated {summary.updated}, deleted {summary.deleted}, "
            f"unchanged {summary.unchanged}; {summary.chunks_embedded} chunks embedded)"
        )
        if summary.dtype:
            echo(f"  embedded in {summary.dtype['dtype']}: {summary.dtype['reason']}")
        for skipped in summary.skipped:
            echo(f"  skipped {skipped['file']}: {skipped['reason']}")
        for note in summary.notes:
            echo(f"  note {note['file']}: {note['note']}")
        _print_unreadable(summary.unreadable, summary.kept, {s["file"] for s in summary.skipped})

    with ctrl_c_ends_the_process():
        run(work)


def status(config: ConfigArg, set_: SetOpt = None, json_out: JsonOpt = False) -> None:
    """Show the index of CONFIG: its manifest, counts, and the files new, changed or deleted since
    the last build. Loads no model and changes nothing."""

    def work() -> None:
        report = open_indexer(config, set_).status()
        if json_out:
            echo(json.dumps(report.to_dict()))
            return
        _print_status(report)

    run(work)


def watch(
    config: ConfigArg,
    set_: SetOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON line per sync on stdout.")] = False,
) -> None:
    """Keep the index of CONFIG in step with its folder: after each burst of changes (adds, edits,
    deletes, renames), run the same sync as `indexer build`. Ctrl-C stops. Needs the `watch` extra."""

    def work() -> None:
        from indexer.watch import FolderWatcher, SyncResult, describe_sync, require_watch_extra

        require_watch_extra()
        ix = open_indexer(config, set_)

        told: set[str] = set()  # lines under a sync already printed: each is news once per run

        def once(line: str) -> None:
            if line not in told:
                told.add(line)
                echo(line)

        def report(result: SyncResult) -> None:
            if json_out:
                summary = result.summary.to_dict() if result.summary else None
                echo(json.dumps({"summary": summary, "error": result.error}))
                return
            if result.error:
                echo(f"error: {result.error}", err=True)
                return
            s = result.summary
            assert s is not None
            echo(describe_sync(s))
            for skipped in s.skipped:
                once(f"  skipped {skipped['file']}: {skipped['reason']}")
            for note in s.notes:
                once(f"  note {note['file']}: {note['note']}")
            _print_unreadable(s.unreadable, s.kept, {k["file"] for k in s.skipped}, once)

        watcher = FolderWatcher(ix, on_sync=report)
        echo(f"Watching {watcher.folder} (Ctrl-C stops)", err=True)
        try:
            watcher.run()
        except KeyboardInterrupt:
            echo("stopped watching", err=True)

    run(work)


def _print_status(report: Any) -> None:
    if not report.built:
        echo(f"No index yet at {report.index}: run `indexer build CONFIG`.")
        echo(f"{len(report.new)} file(s) to index.")
        return
    m = report.manifest
    emb = m.get("embedding", {})
    echo(f"Index {report.index} (collection {report.collection})")
    echo(f"  documents {report.documents}, chunks {report.chunks}")
    echo(
        f"  embedding {emb.get('name')} (dimension {emb.get('dimension')}, fingerprint "
        f"{emb.get('fingerprint')}, normalize {emb.get('normalize')})"
    )
    echo(f"  chunking {m.get('chunking')}")
    echo(f"  built {m.get('created_at')}, updated {m.get('updated_at')} ({m.get('build_seconds')} s)")
    if report.interrupted:
        echo(
            f"  a build was interrupted ({report.chunks_in_store} chunks stored, {report.chunks} committed): "
            "queries see the committed index; the next build finishes the clean-up"
        )
    if report.store_missing:
        echo(
            f"  MISSING the vectors of this index are gone (no {report.collection!r} collection or no "
            "chroma.sqlite3 in the index folder): queries find nothing. The next build indexes every "
            "file again (or use --rebuild)."
        )
    if report.store_damaged:
        echo(f"  DAMAGED {report.store_damaged}")
    for problem in report.problems:
        echo(f"  MISMATCH {problem} (rebuild with --rebuild)")
    if report.up_to_date:
        echo(f"Up to date: {report.unchanged} file(s) unchanged.")
    else:
        echo(
            f"Since the last build: {len(report.new)} new, {len(report.changed)} changed, "
            f"{len(report.deleted)} deleted, {report.unchanged} unchanged."
        )
        for label, names in (("new", report.new), ("changed", report.changed), ("deleted", report.deleted)):
            for name in names:
                echo(f"  {label:8} {name}")
    for name, reason in report.skipped.items():
        echo(f"  skipped  {name}: {reason}")
    unreadable = [{"file": name, "reason": reason} for name, reason in report.unreadable.items()]
    _print_unreadable(unreadable, report.kept, set(report.skipped))


def _print_unreadable(
    unreadable: list[dict[str, str]], kept: list[str], listed: set[str], say: Any = echo
) -> None:
    """Folders and files that cannot be read now (those not already listed as skipped), and how many
    indexed files they hold that the index keeps as last built."""
    for item in unreadable:
        if item["file"] not in listed:
            say(f"  unreadable {item['file']}: {item['reason']}")
    if kept:
        say(f"  kept {len(kept)} indexed file(s) that cannot be read now, as last built")
