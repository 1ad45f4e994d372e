"""The command line: a thin layer over ``indexer.api.Indexer``.

User errors (``IndexerError``) print one paragraph and exit 2, with no traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from indexer.errors import IndexerError

app = typer.Typer(
    name="indexer",
    help="Build a local, private RAG index from a folder of documents, and ask it questions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: --set query.top_k=8 (repeatable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
FilterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        "-f",
        help="Only passages whose metadata match: path=GLOB, type=EXT or any key=value (repeatable).",
    ),
]
ModeOpt = Annotated[
    str | None,
    typer.Option("--mode", help="Retrieval mode: vector, bm25 or hybrid (default: retrieval.mode)."),
]

T = TypeVar("T")

# Longest passage text and citation printed per source; --json carries the whole (bounded) chunk.
_SNIPPET_CHARS = 160
_CITATION_CHARS = 200


def _echo(message: str = "", err: bool = False, nl: bool = True) -> None:
    """Every line the CLI prints goes through here: file names, passages and answers come from
    documents, and must not reach the terminal as escape sequences (see ``indexer.terminal``)."""
    from indexer.terminal import printable

    typer.echo(printable(message, multiline=True), err=err, nl=nl)


class _PrintableFormatter(logging.Formatter):
    """Warnings name files ("skipped NAME: ..."): made printable like everything else."""

    def format(self, record: logging.LogRecord) -> str:
        from indexer.terminal import printable

        return printable(super().format(record), multiline=True)


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except IndexerError as exc:
        _echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        _echo("interrupted", err=True)
        raise typer.Exit(130) from None


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("warning: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    for noisy in ("chromadb", "httpx", "sentence_transformers", "transformers", "urllib3", "pypdf"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _open(config: Path, overrides: list[str] | None, **extra: Any) -> Any:
    from indexer.api import Indexer
    from indexer.config import parse_set_options

    values = parse_set_options(overrides or [])
    values.update({k: v for k, v in extra.items() if v is not None})
    return Indexer.from_config(config, values)


def _run(fn: Callable[[], T]) -> T:
    _setup_logging()
    with _user_errors():
        return fn()


@app.command()
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
        ix = _open(config, set_)
        summary = ix.build(
            rebuild=rebuild, dry_run=dry_run, strict=strict, show_progress=should_show(quiet=json_out)
        )
        if json_out:
            _echo(json.dumps(summary.to_dict()))
            return
        verb = "Would index" if dry_run else "Indexed"
        _echo(
            f"{verb} {summary.documents} documents, {summary.chunks} chunks in {summary.seconds:.1f} s "
            f"(added {summary.added}, updated {summary.updated}, deleted {summary.deleted}, "
            f"unchanged {summary.unchanged}; {summary.chunks_embedded} chunks embedded)"
        )
        for skipped in summary.skipped:
            _echo(f"  skipped {skipped['file']}: {skipped['reason']}")

    _run(work)


@app.command()
def query(
    config: ConfigArg,
    question: Annotated[str, typer.Argument(help="The question.", show_default=False)],
    set_: SetOpt = None,
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", min=1, help="Passages to retrieve.")] = None,
    filter_: FilterOpt = None,
    mode: ModeOpt = None,
    retrieve_only: Annotated[bool, typer.Option("--retrieve-only", help="Sources only, no answer.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Answer QUESTION from the index of CONFIG, streaming the answer, then its sources."""
    from indexer.query.filters import parse_filter_options

    def work() -> None:
        extra = {"retrieval.mode": mode, **({"llm.provider": "none"} if retrieve_only else {})}
        ix = _open(config, set_, **extra)
        stream = ix.stream(question, top_k=top_k, filters=parse_filter_options(filter_ or []))
        if json_out:
            _echo(json.dumps(stream.result().to_dict()))
            return
        if stream.notice:
            _echo(f"note: {stream.notice}", err=True)
        _stream_answer(stream)
        _print_sources(stream.sources)

    _run(work)


@app.command()
def status(config: ConfigArg, set_: SetOpt = None, json_out: JsonOpt = False) -> None:
    """Show the index of CONFIG: its manifest, counts, and the files new, changed or deleted since
    the last build. Loads no model and changes nothing."""

    def work() -> None:
        report = _open(config, set_).status()
        if json_out:
            _echo(json.dumps(report.to_dict()))
            return
        _print_status(report)

    _run(work)


@app.command()
def chat(
    config: ConfigArg,
    set_: SetOpt = None,
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", min=1, help="Passages to retrieve.")] = None,
    filter_: FilterOpt = None,
    mode: ModeOpt = None,
) -> None:
    """Talk with the index of CONFIG: follow-up questions use the conversation so far.
    /sources shows the last answer's sources, /reset forgets the conversation, /exit leaves."""
    from indexer.query.filters import parse_filter_options

    def work() -> None:
        ix = _open(config, set_, **{"retrieval.mode": mode})
        session = ix.chat(top_k=top_k, filters=parse_filter_options(filter_ or []))
        _echo(f"Chatting with {config}. Commands: /sources, /reset, /exit (or Ctrl-D).")
        while True:
            try:
                sys.stdout.write("> ")
                sys.stdout.flush()
                line = sys.stdin.readline()
            except KeyboardInterrupt:
                _echo("")
                return
            if not line:  # end of input
                _echo("")
                return
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                return
            if text == "/reset":
                session.reset()
                _echo("(conversation forgotten)")
                continue
            if text == "/sources":
                _print_sources(session.sources)
                continue
            if text.startswith("/"):
                _echo(f"unknown command {text}: use /sources, /reset or /exit")
                continue
            try:
                stream = session.ask(text)
            except IndexerError as exc:  # one bad turn does not end the session
                _echo(f"error: {exc}", err=True)
                continue
            except KeyboardInterrupt:  # during retrieval: back to the prompt
                _echo("[stopped]", err=True)
                continue
            if stream.notice:
                _echo(f"note: {stream.notice}", err=True)
            if stream.answer is None:
                _print_sources(stream.sources)
            else:
                _stream_answer(stream)
            session.remember(text, stream)

    _run(work)


def _print_status(report: Any) -> None:
    if not report.built:
        _echo(f"No index yet at {report.index}: run `indexer build CONFIG`.")
        _echo(f"{len(report.new)} file(s) to index.")
        return
    m = report.manifest
    emb = m.get("embedding", {})
    _echo(f"Index {report.index} (collection {report.collection})")
    _echo(f"  documents {report.documents}, chunks {report.chunks}")
    _echo(
        f"  embedding {emb.get('name')} (dimension {emb.get('dimension')}, fingerprint "
        f"{emb.get('fingerprint')}, normalize {emb.get('normalize')})"
    )
    _echo(f"  chunking {m.get('chunking')}")
    _echo(f"  built {m.get('created_at')}, updated {m.get('updated_at')} ({m.get('build_seconds')} s)")
    if report.interrupted:
        _echo(
            f"  a build was interrupted ({report.chunks_in_store} chunks stored, {report.chunks} committed): "
            "queries see the committed index; the next build finishes the clean-up"
        )
    if report.store_missing:
        _echo(
            f"  MISSING the vectors of this index are gone (no {report.collection!r} collection or no "
            "chroma.sqlite3 in the index folder): queries find nothing. The next build indexes every "
            "file again (or use --rebuild)."
        )
    for problem in report.problems:
        _echo(f"  MISMATCH {problem} (rebuild with --rebuild)")
    if report.up_to_date:
        _echo(f"Up to date: {report.unchanged} file(s) unchanged.")
    else:
        _echo(
            f"Since the last build: {len(report.new)} new, {len(report.changed)} changed, "
            f"{len(report.deleted)} deleted, {report.unchanged} unchanged."
        )
        for label, names in (("new", report.new), ("changed", report.changed), ("deleted", report.deleted)):
            for name in names:
                _echo(f"  {label:8} {name}")
    for name, reason in report.skipped.items():
        _echo(f"  skipped  {name}: {reason}")


def _stream_answer(stream: Any) -> None:
    """Print the answer token by token; Ctrl-C stops generation and keeps what was printed."""
    from indexer.terminal import printable

    if stream.answer is None:
        return
    try:
        for token in stream:
            sys.stdout.write(printable(token, multiline=True))
            sys.stdout.flush()
    except KeyboardInterrupt:
        stream.close()
        _echo("\n[stopped]", err=True)
    _echo("\n")


@app.command()
def doctor(config: ConfigArg, set_: SetOpt = None, json_out: JsonOpt = False) -> None:
    """Check what CONFIG will run with on this machine: the llama.cpp build and the CPU, threads,
    torch, the model, its chat template and stop tokens, and a sample prompt as llama.cpp receives
    it. Builds nothing. Exits 1 when it finds a problem."""
    from indexer.config import load_config, parse_set_options
    from indexer.doctor import diagnose

    def work() -> Any:
        return diagnose(load_config(config, parse_set_options(set_ or [])))

    report = _run(work)
    if json_out:
        typer.echo(json.dumps(report.to_dict()))
    else:
        for title, rows in report.sections:
            _echo(title)
            for name, value in rows:
                _echo(f"  {name + ':':<22} {value}")
        if report.prompt is not None:
            _echo(f"Sample prompt ({report.prompt_tokens} tokens, as llama.cpp receives it):")
            _echo("  " + report.prompt.replace("\n", "\n  "))
        for warning in report.warnings:
            _echo(f"warning: {warning}", err=True)
        for problem in report.problems:
            _echo(f"problem: {problem}", err=True)
        if not report.problems:
            _echo("No problems found.")
    if report.problems:
        raise typer.Exit(1)


@app.command("config")
def show_config(config: ConfigArg, set_: SetOpt = None) -> None:
    """Print the resolved, validated config (after extends, ${VAR} and --set)."""
    from indexer.config import config_to_yaml, load_config, parse_set_options

    _run(lambda: _echo(config_to_yaml(load_config(config, parse_set_options(set_ or []))), nl=False))


@app.command()
def serve(
    config: ConfigArg,
    set_: SetOpt = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default server.host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Port (default server.port, 8000).")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Keep the index in step with its folder while serving.")
    ] = False,
) -> None:
    """Serve the index of CONFIG over HTTP: a web page at /, /v1/query, /v1/retrieve, OpenAI-compatible
    /v1/chat/completions, /v1/embeddings, /v1/models, /v1/index, /health; the schema at /openapi.json
    (docs at /docs with server.docs: true). Needs the `server` extra (and `watch` for --watch)."""

    def work() -> None:
        from indexer.server.run import require_server_extra, serve

        require_server_extra()
        if watch:
            from indexer.watch import require_watch_extra

            require_watch_extra()
        serve(_open(config, set_), host=host, port=port, watch=watch)

    _run(work)


@app.command()
def watch(
    config: ConfigArg,
    set_: SetOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON line per sync on stdout.")] = False,
) -> None:
    """Keep the index of CONFIG in step with its folder: after each burst of changes (adds, edits,
    deletes, renames), run the same sync as `indexer build`. Ctrl-C stops. Needs the `watch` extra."""

    def work() -> None:
        from indexer.watch import FolderWatcher, SyncResult, require_watch_extra

        require_watch_extra()
        ix = _open(config, set_)

        def report(result: SyncResult) -> None:
            if json_out:
                summary = result.summary.to_dict() if result.summary else None
                typer.echo(json.dumps({"summary": summary, "error": result.error}))
                return
            if result.error:
                typer.echo(f"error: {result.error}", err=True)
                return
            s = result.summary
            assert s is not None
            typer.echo(
                f"Synced: {s.documents} documents, {s.chunks} chunks in {s.seconds:.1f} s (added {s.added}, "
                f"updated {s.updated}, deleted {s.deleted}, unchanged {s.unchanged})"
            )
            for skipped in s.skipped:
                typer.echo(f"  skipped {skipped['file']}: {skipped['reason']}")

        watcher = FolderWatcher(ix, on_sync=report)
        typer.echo(f"Watching {watcher.folder} (Ctrl-C stops)", err=True)
        try:
            watcher.run()
        except KeyboardInterrupt:
            typer.echo("stopped watching", err=True)

    _run(work)


@app.command("mcp")
def mcp_command(
    config: ConfigArg,
    set_: SetOpt = None,
    http: Annotated[
        bool, typer.Option("--http", help="Streamable HTTP on 127.0.0.1 instead of stdio.")
    ] = False,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port for --http.")] = 8765,
) -> None:
    """Serve the index of CONFIG to MCP clients (agents, editors): tools `search` and `ask`, resources
    for the index status and each indexed file. stdio by default. Needs the `mcp` extra."""

    def work() -> None:
        from indexer.mcp_server import require_mcp_extra, run

        require_mcp_extra()
        run(_open(config, set_), http=http, port=port)

    _run(work)


def _print_sources(sources: list[Any]) -> None:
    from indexer.terminal import printable

    if not sources:
        _echo("No matching passages.")
        return
    _echo("Sources:")
    for s in sources:
        snippet = printable(" ".join(s.text.split()), limit=_SNIPPET_CHARS)
        citation = printable(s.citation(), limit=_CITATION_CHARS)
        _echo(f"  [{s.rank}] {citation}  (score {s.score:.3f})")
        _echo(f"      {snippet}")


def main() -> None:
    app()


# --- eval -----------------------------------------------------------------------------------------


class _EvalGroup(TyperGroup):
    """``indexer eval CONFIG|SPEC ...`` runs an evaluation (the ``run`` command); ``compare`` and
    ``generate`` are sub-commands, recognised by name before anything is read as a path."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_EvalGroup,
    help=(
        "Evaluate retrieval and answers: `indexer eval CONFIG --dataset PATH`, `indexer eval SPEC.yaml`, "
        "`indexer eval compare RUN_A RUN_B`, `indexer eval generate CONFIG --n 50 --out FILE`."
    ),
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")


@eval_app.command("run")
def eval_run(
    target: Annotated[
        Path, typer.Argument(help="A config (with --dataset) or an eval spec YAML.", show_default=False)
    ],
    dataset: Annotated[
        list[Path] | None,
        typer.Option(
            "--dataset", "-d", help="BEIR folder, questions .jsonl or LlamaIndex .json (repeatable)."
        ),
    ] = None,
    set_: SetOpt = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder under which each run gets its own.")
    ] = Path("runs"),
    json_out: JsonOpt = False,
    fail_under: Annotated[
        list[str] | None,
        typer.Option("--fail-under", help="METRIC=MIN, e.g. ndcg@10=0.6: exit 1 below it (repeatable)."),
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="Metric to compute, e.g. mrr@10 (repeatable).")
    ] = None,
    judge: Annotated[bool, typer.Option("--judge", help="LLM-judged faithfulness and relevancy.")] = False,
    answers: Annotated[
        bool | None,
        typer.Option("--answers/--no-answers", help="Generate answers (default: when references exist)."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N questions only.")] = None,
    queries: Annotated[
        str | None, typer.Option("--queries", help="BEIR: queries file in the folder.")
    ] = None,
    qrels: Annotated[str | None, typer.Option("--qrels", help="BEIR: qrels file in the folder.")] = None,
    index_cache: Annotated[
        Path | None, typer.Option("--index-cache", help="Where dataset indexes are kept and reused.")
    ] = None,
    no_chart: Annotated[bool, typer.Option("--no-chart", help="Skip the PNG chart.")] = False,
) -> None:
    """Evaluate a config on datasets (or every variant of an eval spec) and save the run."""
    from indexer.config import parse_set_options
    from indexer.eval.session import evaluate, make_spec, parse_gates
    from indexer.progress import should_show

    def work() -> list[str]:
        spec = make_spec(
            target,
            datasets=dataset or [],
            overrides=parse_set_options(set_ or []),
            metrics=metric,
            judge=judge,
            answers=answers,
            queries=queries,
            qrels=qrels,
            limit=limit,
            index_cache=index_cache,
            fail_under=parse_gates(fail_under or []),
        )
        outcome = evaluate(spec, out=out, chart=not no_chart, show_progress=should_show(quiet=json_out))
        if json_out:
            _echo(json.dumps(outcome.to_dict()))
        else:
            _print_eval(outcome)
        return outcome.failures

    failures = _run(work)
    if failures:
        _echo("fail-under: the run falls short:\n  " + "\n  ".join(failures), err=True)
        raise typer.Exit(1)


def _print_eval(outcome: Any) -> None:
    for result in outcome.summary["results"]:
        counts = result["counts"]
        _echo(
            f"{result['variant']} @ {result['dataset']}: {counts['questions']} questions "
            f"({counts['judged']} judged, {counts['answered']} answered)"
        )
        for name, value in result["summary"].items():
            _echo(f"  {name:<22}{value:.4f}")
        for name, judged in counts.get("judge", {}).items():
            _echo(f"  {name}: {judged['scored']} verdicts, {judged['failed']} judge failures")
        for notice in result["notices"]:
            _echo(f"  note: {notice}")
    _echo(f"Run saved to {outcome.run_dir} (report.md, summary.json, questions.jsonl)")


@eval_app.command("compare")
def eval_compare(
    run_a: Annotated[Path, typer.Argument(help="The earlier run folder.", show_default=False)],
    run_b: Annotated[Path, typer.Argument(help="The later run folder.", show_default=False)],
    metric: Annotated[
        str | None, typer.Option("--metric", "-m", help="Metric deciding flips (default hit@10).")
    ] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="A question passes at or above it.")] = 0.5,
    json_out: JsonOpt = False,
) -> None:
    """Per-metric deltas between two runs, and the questions that flipped."""
    from indexer.eval.compare import compare_runs, render_comparison

    def work() -> None:
        comparison = compare_runs(run_a, run_b, metric=metric, threshold=threshold)
        if json_out:
            _echo(json.dumps(comparison.to_dict()))
        else:
            _echo(render_comparison(comparison), nl=False)

    _run(work)


@eval_app.command("generate")
def eval_generate(
    config: ConfigArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Questions JSONL to write.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Questions to draft (one per sampled chunk).")] = 50,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the chunk sample.")] = 0,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Draft question/answer pairs from the documents of CONFIG with its LLM (JSON-constrained)."""
    from indexer.progress import should_show

    def work() -> None:
        from indexer.eval.generate import generate_questions

        ix = _open(config, set_, **{"llm.required": True})
        summary = generate_questions(
            ix.config, ix.components, n=n, out=out, seed=seed, show_progress=should_show(quiet=json_out)
        )
        if json_out:
            _echo(json.dumps(summary.to_dict()))
            return
        _echo(
            f"Wrote {summary.written} questions to {out} ({summary.failed} drafts failed to parse, "
            f"from {summary.sampled} of {summary.chunks} chunks)"
        )
        for failure in summary.failures[:5]:
            _echo(f"  failed: {failure}")

    _run(work)
