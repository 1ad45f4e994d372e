"""What the commands print: every line made safe for the terminal, answers streamed token by
token, and sources as a numbered list."""

from __future__ import annotations

import logging
import sys
from typing import Any

import typer

# Longest passage text and citation printed per source; --json carries the whole (bounded) chunk.
_SNIPPET_CHARS = 160
_CITATION_CHARS = 200


def echo(message: str = "", err: bool = False, nl: bool = True) -> None:
    """Every line the CLI prints goes through here: file names, passages and answers come from
    documents, and must not reach the terminal as escape sequences (see ``indexer.terminal``)."""
    from indexer.terminal import printable

    typer.echo(printable(message, multiline=True), err=err, nl=nl)


def echo_dim(message: str) -> None:
    """A line of lesser news (chat's rewritten question), dimmed on a terminal; click drops the
    style where stdout is not one. Made printable first, so the only escapes are the style's."""
    from indexer.terminal import printable

    typer.secho(printable(message, multiline=True), dim=True)


class PrintableFormatter(logging.Formatter):
    """Warnings name files ("skipped NAME: ..."): made printable like everything else. The level
    is written as the CLI writes its own lines: ``warning:``, ``info:``, ``error:``."""

    def format(self, record: logging.LogRecord) -> str:
        from indexer.terminal import printable

        lowered = logging.makeLogRecord({**record.__dict__, "levelname": record.levelname.lower()})
        return printable(super().format(lowered), multiline=True)


def stream_answer(stream: Any) -> None:
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
        echo("\n[stopped]", err=True)
    echo("\n")
    if getattr(stream, "runaway", None):  # known only once the answer has stopped
        echo(f"note: {stream.runaway}", err=True)


def print_sources(sources: list[Any]) -> None:
    from indexer.terminal import printable

    if not sources:
        echo("No matching passages.")
        return
    echo("Sources:")
    for s in sources:
        snippet = printable(" ".join(s.text.split()), limit=_SNIPPET_CHARS)
        citation = printable(s.citation(), limit=_CITATION_CHARS)
        relevance = getattr(s, "relevance_label", None)
        shown = f"score {s.score:.3f}" + (f", relevance {relevance}" if relevance else "")
        echo(f"  [{s.rank}] {citation}  ({shown})")
        echo(f"      {snippet}")


def answer_checked(stream: Any, query: Any) -> None:
    """The answer, then how each sentence is backed by the sources. A generated answer whose
    unsupported sentences are only flagged streams as it is generated, its sentences marked after
    it; otherwise (``query.unsupported`` drop or refuse, ``query.answer_style`` extract or auto)
    nothing may be shown before it is checked, so it is printed whole."""
    if query.unsupported == "flag" and query.answer_style == "generate":
        stream_answer(stream)
        if stream.answer is not None and not stream.stopped:
            print_sentences(stream.checked().sentences)
        return
    try:
        for _ in stream:
            pass
    except KeyboardInterrupt:
        stream.close()
        echo("[stopped]", err=True)
        return
    checked = stream.checked()
    if checked.answer is not None:
        echo(checked.answer)
        echo("")
    for note in (stream.runaway, checked.notice):
        if note:
            echo(f"note: {note}", err=True)
    print_sentences(checked.sentences)


def print_sentences(sentences: list[Any]) -> None:
    """Each sentence's citations; ``+`` marks one the system added (the model wrote none), and an
    unsupported sentence is shown, highlighted, with the reason."""
    from indexer.terminal import printable

    if not sentences:
        return
    echo("Checked against the sources (+ = citation added by the system):")
    for s in sentences:
        cited = ",".join(map(str, s.citations)) or "-"
        mark = f"[{cited}]{'+' if s.cited_by == 'system' else ''}"
        text = printable(" ".join(s.text.split()), limit=_SNIPPET_CHARS)
        if s.supported:
            echo(f"  ok          {mark:<7} {text}")
        else:
            typer.secho(
                printable(f"  UNSUPPORTED {mark:<7} {text}\n              ({s.reason})", multiline=True),
                fg="yellow",
            )
