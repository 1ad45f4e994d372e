"""Commands that check a config before anything is built: ``doctor`` and ``config``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from indexer.cli.options import ConfigArg, JsonOpt, SetOpt
from indexer.cli.output import echo
from indexer.cli.running import run


def doctor(
    config: ConfigArg,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
    prompt: Annotated[
        bool, typer.Option("--prompt", help="Also print a sample prompt as llama.cpp receives it.")
    ] = False,
) -> None:
    """Check what CONFIG will run with on this machine: the documents folder (readable, how many
    files), the index (built, made with this config, current), the llama.cpp build and the CPU,
    threads, torch, the model, its chat template and stop tokens. Builds nothing. Exits 1 when it
    finds a problem."""
    from indexer.config import load_config, parse_set_options
    from indexer.doctor import diagnose

    def work() -> Any:
        return diagnose(load_config(config, parse_set_options(set_ or [])))

    report = run(work)
    if not prompt:  # the count stays: it sizes llm.n_ctx; the text is for who asks for it
        report.prompt = None
    if json_out:
        typer.echo(json.dumps(report.to_dict()))
    else:
        for title, rows in report.sections:
            echo(title)
            for name, value in rows:
                echo(f"  {name + ':':<22} {value}")
        if report.prompt is not None:
            echo(f"Sample prompt ({report.prompt_tokens} tokens, as llama.cpp receives it):")
            echo("  " + report.prompt.replace("\n", "\n  "))
        elif report.prompt_tokens is not None:
            echo(f"Sample prompt: {report.prompt_tokens} tokens (--prompt prints it)")
        for warning in report.warnings:
            echo(f"warning: {warning}", err=True)
        for problem in report.problems:
            echo(f"problem: {problem}", err=True)
        if not report.problems:
            echo("No problems found.")
    if report.problems:
        raise typer.Exit(1)


def show_config(config: ConfigArg, set_: SetOpt = None) -> None:
    """Print the resolved, validated config (after extends, ${VAR} and --set)."""
    from indexer.config import config_to_yaml, load_config, parse_set_options

    run(lambda: echo(config_to_yaml(load_config(config, parse_set_options(set_ or []))), nl=False))
