"""``indexer eval``: run an evaluation, compare two runs, draft questions from the documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from indexer.cli.options import ConfigArg, JsonOpt, SetOpt, resolve_config
from indexer.cli.output import echo
from indexer.cli.running import open_indexer, run


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


@eval_app.command("run")
def eval_run(
    target: Annotated[
        Path,
        typer.Argument(
            help="A config or a folder of documents (with --dataset), or an eval spec YAML.",
            show_default=False,
            callback=resolve_config,
        ),
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
            echo(json.dumps(outcome.to_dict()))
        else:
            _print_eval(outcome)
        return outcome.failures

    failures = run(work)
    if failures:
        echo("fail-under: the run falls short:\n  " + "\n  ".join(failures), err=True)
        raise typer.Exit(1)


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
            echo(json.dumps(comparison.to_dict()))
        else:
            echo(render_comparison(comparison), nl=False)

    run(work)


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

        ix = open_indexer(config, set_, **{"llm.required": True})
        summary = generate_questions(
            ix.config, ix.components, n=n, out=out, seed=seed, show_progress=should_show(quiet=json_out)
        )
        if json_out:
            echo(json.dumps(summary.to_dict()))
            return
        echo(
            f"Wrote {summary.written} questions to {out} ({summary.failed} drafts failed to parse, "
            f"from {summary.sampled} of {summary.chunks} chunks)"
        )
        for failure in summary.failures[:5]:
            echo(f"  failed: {failure}")

    run(work)


def _print_eval(outcome: Any) -> None:
    for result in outcome.summary["results"]:
        counts = result["counts"]
        echo(
            f"{result['variant']} @ {result['dataset']}: {counts['questions']} questions "
            f"({counts['judged']} judged, {counts['answered']} answered)"
        )
        for name, value in result["summary"].items():
            echo(f"  {name:<22}{value:.4f}")
        for name, judged in counts.get("judge", {}).items():
            echo(f"  {name}: {judged['scored']} verdicts, {judged['failed']} judge failures")
        for notice in result["notices"]:
            echo(f"  note: {notice}")
    echo(f"Run saved to {outcome.run_dir} (report.md, summary.json, questions.jsonl)")
