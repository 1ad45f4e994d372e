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

T = TypeVar("T")


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except IndexerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def _setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    for noisy in ("chromadb", "httpx", "sentence_transformers", "transformers", "urllib3"):
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
) -> None:
    """Load, chunk, embed and persist the documents of CONFIG (only what changed)."""
    from indexer.progress import should_show

    def work() -> None:
        ix = _open(config, set_)
        summary = ix.build(rebuild=rebuild, dry_run=dry_run, show_progress=should_show(quiet=json_out))
        if json_out:
            typer.echo(json.dumps(summary.to_dict()))
            return
        verb = "Would index" if dry_run else "Indexed"
        typer.echo(
            f"{verb} {summary.documents} documents, {summary.chunks} chunks in {summary.seconds:.1f} s "
            f"(added {summary.added}, updated {summary.updated}, deleted {summary.deleted}, "
            f"unchanged {summary.unchanged}; {summary.chunks_embedded} chunks embedded)"
        )
        for skipped in summary.skipped:
            typer.echo(f"  skipped {skipped['file']}: {skipped['reason']}")

    _run(work)


@app.command()
def query(
    config: ConfigArg,
    question: Annotated[str, typer.Argument(help="The question.", show_default=False)],
    set_: SetOpt = None,
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", min=1, help="Passages to retrieve.")] = None,
    retrieve_only: Annotated[bool, typer.Option("--retrieve-only", help="Sources only, no answer.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Answer QUESTION from the index of CONFIG, streaming the answer, then its sources."""

    def work() -> None:
        ix = _open(config, set_, **{"llm.provider": "none"} if retrieve_only else {})
        stream = ix.stream(question, top_k=top_k)
        if json_out:
            typer.echo(json.dumps(stream.result().to_dict()))
            return
        if stream.notice:
            typer.echo(f"note: {stream.notice}", err=True)
        if stream.answer is not None:
            try:
                for token in stream:
                    sys.stdout.write(token)
                    sys.stdout.flush()
            except KeyboardInterrupt:
                stream.close()
                typer.echo("\n[stopped]", err=True)
            typer.echo("\n")
        _print_sources(stream.sources)

    _run(work)


@app.command("config")
def show_config(config: ConfigArg, set_: SetOpt = None) -> None:
    """Print the resolved, validated config (after extends, ${VAR} and --set)."""
    from indexer.config import config_to_yaml, load_config, parse_set_options

    _run(lambda: typer.echo(config_to_yaml(load_config(config, parse_set_options(set_ or []))), nl=False))


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
) -> None:
    """Serve the index of CONFIG over HTTP: /v1/query, /v1/retrieve, OpenAI-compatible /v1/chat/completions,
    /v1/embeddings, /v1/models, /v1/index, /health; docs at /docs. Needs the `server` extra."""

    def work() -> None:
        from indexer.server.run import require_server_extra, serve

        require_server_extra()
        serve(_open(config, set_), host=host, port=port)

    _run(work)


def _print_sources(sources: list[Any]) -> None:
    if not sources:
        typer.echo("No matching passages.")
        return
    typer.echo("Sources:")
    for s in sources:
        snippet = " ".join(s.text.split())
        snippet = snippet if len(snippet) <= 160 else snippet[:157] + "..."
        typer.echo(f"  [{s.rank}] {s.citation()}  (score {s.score:.3f})")
        typer.echo(f"      {snippet}")


def main() -> None:
    app()
