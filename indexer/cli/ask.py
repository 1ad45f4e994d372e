"""Commands that ask the index: ``query`` (one question) and ``chat`` (a conversation)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from indexer.cli.options import ConfigArg, FilterOpt, JsonOpt, ModeOpt, SetOpt, TopKOpt
from indexer.cli.output import answer_checked, echo, echo_dim, print_sources
from indexer.cli.running import open_indexer, run
from indexer.errors import IndexerError


def query(
    config: ConfigArg,
    question: Annotated[str, typer.Argument(help="The question.", show_default=False)],
    set_: SetOpt = None,
    top_k: TopKOpt = None,
    filter_: FilterOpt = None,
    mode: ModeOpt = None,
    retrieve_only: Annotated[bool, typer.Option("--retrieve-only", help="Sources only, no answer.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Answer QUESTION from the index of CONFIG, streaming the answer, then its sources."""
    from indexer.query.filters import parse_filter_options
    from indexer.query.prefetch import stream_with_prefetch

    def work() -> None:
        only = {"llm.provider": "none", "query.answer_style": "generate"} if retrieve_only else {}
        extra = {"retrieval.mode": mode, **only}
        ix = open_indexer(config, set_, **extra)
        # Cold, retrieval runs in a child while the LLM loads here: one core each (prefetch.py).
        stream = stream_with_prefetch(ix, question, top_k=top_k, filters=parse_filter_options(filter_ or []))
        if json_out:
            echo(json.dumps(stream.result().to_dict()))
            return
        if stream.notice:
            echo(f"note: {stream.notice}", err=True)
        answer_checked(stream, ix.config.query)
        print_sources(stream.sources)

    run(work)


def chat(
    config: ConfigArg,
    set_: SetOpt = None,
    top_k: TopKOpt = None,
    filter_: FilterOpt = None,
    mode: ModeOpt = None,
) -> None:
    """Talk with the index of CONFIG: follow-up questions use the conversation so far (the question
    they were rewritten to is shown dimmed), and each answer is followed by its sources. /sources
    shows them again, /reset forgets the conversation, /exit leaves. Exits 2, as `query` would,
    when there is no index or the configured model cannot be loaded (before the first question),
    or when a question failed as `query` would have (after the session, which goes on)."""
    from indexer.query.filters import parse_filter_options
    from indexer.query.text import unicode_problem

    def work() -> int:
        ix = open_indexer(config, set_, **{"retrieval.mode": mode})
        session = ix.chat(top_k=top_k, filters=parse_filter_options(filter_ or []))
        session.check()
        echo(f"Chatting with {config}. Commands: /sources, /reset, /exit (or Ctrl-D).")
        failed = 0  # the exit code once the session ends: 2 if a question failed as `query` would
        while True:
            try:
                sys.stdout.write("> ")
                sys.stdout.flush()
                line = _read_line()
            except KeyboardInterrupt:
                echo("")
                return failed
            if not line:  # end of input
                echo("")
                return failed
            text = line.strip()
            if not text:
                continue
            problem = unicode_problem(text)
            if problem is not None:  # one bad line does not end the session either
                echo(f"error: the question {problem}", err=True)
                continue
            if text in ("/exit", "/quit"):
                return failed
            if text == "/reset":
                session.reset()
                echo("(conversation forgotten)")
                continue
            if text == "/sources":
                print_sources(session.sources)
                continue
            if text.startswith("/"):
                echo(f"unknown command {text}: use /sources, /reset or /exit")
                continue
            try:
                stream = session.ask(text)
            except IndexerError as exc:  # one bad turn does not end the session, but sets its exit code
                echo(f"error: {exc}", err=True)
                failed = exc.exit_code
                continue
            except KeyboardInterrupt:  # during retrieval: back to the prompt
                echo("[stopped]", err=True)
                continue
            if stream.question and stream.question != text:
                echo_dim(f"(searched for: {stream.question})")
            if stream.notice:
                echo(f"note: {stream.notice}", err=True)
            answer_checked(stream, ix.config.query)
            print_sources(stream.sources)
            session.remember(text, stream)

    code = run(work)
    if code:
        raise typer.Exit(code)


def _read_line() -> str:
    """One line of input. Decoded here, not by ``sys.stdin``: its decoder raises on bytes that are
    not text in its encoding (a Latin-1 terminal), which would end the session; kept as
    surrogates instead, the line is refused with the same error a question argument gets."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        return sys.stdin.readline()
    return buffer.readline().decode(sys.stdin.encoding or "utf-8", "surrogateescape")
