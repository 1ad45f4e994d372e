"""Evaluation runs end to end on real data (a slice of the shared MS MARCO subset) with the real
embedder and Chroma: dataset indexes apart from the config's own, shared by variants and reused,
reproducible numbers, the saved run folder, gates, comparison, and the CLI's ``eval`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from indexer.errors import ConfigError
from indexer.eval.compare import compare_runs, render_comparison
from indexer.eval.session import EvalOutcome, evaluate, make_spec, parse_gates
from tests.adversarial.helpers import cli
from tests.conftest import SAMPLE_DIR, SHARED_DATA, write_config

MSMARCO = SHARED_DATA / "msmarco_subset"
# The three judged queries with the fewest judgements: 29 judged passages in all.
QUERY_IDS = ("855410", "1121709", "1037798")
DISTRACTORS = 40

pytestmark = pytest.mark.shared_data(MSMARCO)


@pytest.fixture(scope="module")
def mini_msmarco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BEIR folder with the real queries, qrels and passages of QUERY_IDS plus real distractors."""
    folder = tmp_path_factory.mktemp("msmarco_mini")
    queries = [
        json.loads(x) for x in (MSMARCO / "queries.judged.jsonl").read_text().splitlines() if x.strip()
    ]
    rows = (MSMARCO / "qrels" / "test.normalized.tsv").read_text().splitlines()
    qrels = [r for r in rows[1:] if r.split("\t")[0] in QUERY_IDS]
    judged = {r.split("\t")[1] for r in qrels}
    corpus, others = [], 0
    # split("\n"), not splitlines(): passages hold characters such as U+0085 that it splits on.
    for line in (MSMARCO / "corpus.jsonl").read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        doc_id = json.loads(line)["_id"]
        if doc_id in judged or others < DISTRACTORS:
            corpus.append(line)
            others += doc_id not in judged
    (folder / "corpus.jsonl").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in queries if q["_id"] in QUERY_IDS), encoding="utf-8"
    )
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("\n".join([rows[0], *qrels]) + "\n")
    return folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, mini_msmarco: Path) -> Path:
    """A config and a 2 x 2 sweep spec over it (chunk size x top-k)."""
    folder = tmp_path_factory.mktemp("evalws")
    write_config(folder, SAMPLE_DIR, llm={"provider": "none"})
    spec = {
        "config": "config.yaml",
        "datasets": [{"path": str(mini_msmarco), "name": "msmarco-mini"}],
        "grid": {"chunking.chunk_size": [64, 256], "query.top_k": [3, 5]},
    }
    (folder / "sweep.yaml").write_text(yaml.safe_dump(spec))
    return folder


@pytest.fixture(scope="module")
def two_sweeps(workspace: Path) -> tuple[EvalOutcome, EvalOutcome]:
    spec = make_spec(workspace / "sweep.yaml")
    first = evaluate(spec, out=workspace / "runs")
    second = evaluate(make_spec(workspace / "sweep.yaml"), out=workspace / "runs")
    return first, second


@pytest.mark.slow
def test_variants_that_share_embedding_and_chunking_share_one_index(
    two_sweeps: tuple[EvalOutcome, EvalOutcome], workspace: Path
) -> None:
    first, second = two_sweeps
    results = first.summary["results"]
    assert [r["variant"] for r in results] == [
        "chunk_size=64,top_k=3",
        "chunk_size=64,top_k=5",
        "chunk_size=256,top_k=3",
        "chunk_size=256,top_k=5",
    ]
    indexes = first.summary["indexes"]
    assert len(indexes) == 2
    assert sorted(len(i["variants"]) for i in indexes.values()) == [2, 2]
    for index in indexes.values():
        assert index["documents"] == 29 + DISTRACTORS
        assert index["build"]["chunks_embedded"] == index["chunks"]  # built once, in the first run
        assert Path(index["location"]).parent == workspace / "eval-indexes"
    small, large = (next(i for i in indexes.values() if i["chunking"]["chunk_size"] == s) for s in (64, 256))
    assert small["chunks"] > large["chunks"]  # long passages split at 64 tokens
    # The config's own index was never touched.
    assert not (workspace / "storage").exists()
    # Later runs reuse the indexes: nothing embedded.
    assert all(i["build"]["chunks_embedded"] == 0 for i in second.summary["indexes"].values())


def test_rerunning_an_identical_spec_reproduces_the_retrieval_numbers(
    two_sweeps: tuple[EvalOutcome, EvalOutcome],
) -> None:
    first, second = two_sweeps
    assert first.run_dir != second.run_dir
    assert [r["summary"] for r in first.summary["results"]] == [
        r["summary"] for r in second.summary["results"]
    ]
    lines = [(run.run_dir / "questions.jsonl").read_text().splitlines() for run in two_sweeps]
    retrieved = [[json.loads(x)["retrieved"] for x in run_lines] for run_lines in lines]
    assert retrieved[0] == retrieved[1]


def test_retrieval_is_scored_on_documents_deep_enough_for_recall_at_100(
    two_sweeps: tuple[EvalOutcome, EvalOutcome],
) -> None:
    first, _ = two_sweeps
    for result in first.summary["results"]:
        summary = result["summary"]
        assert set(summary) == {
            "hit@1",
            "hit@10",
            "mrr@10",
            "ndcg@10",
            "recall@10",
            "recall@100",
            "precision@10",
        }
        assert all(0.0 <= v <= 1.0 for v in summary.values())
        # 69 documents, 100 deep: every judged passage comes back, even when split in chunks.
        assert summary["recall@100"] == 1.0
        assert summary["hit@10"] == 1.0 and summary["ndcg@10"] > 0.3
        assert result["counts"] == {"questions": 3, "judged": 3, "answered": 0, "answer_errors": 0}
        assert result["latency"]["retrieval_ms"]["p50"] > 0
    # top_k changes answers, not retrieval at depth: variants on one index score the same.
    by_name = {r["variant"]: r["summary"] for r in first.summary["results"]}
    assert by_name["chunk_size=64,top_k=3"] == by_name["chunk_size=64,top_k=5"]
    records = [json.loads(x) for x in (first.run_dir / "questions.jsonl").read_text().splitlines()]
    assert len(records) == 12
    record = records[0]
    assert record["variant"] == "chunk_size=64,top_k=3" and record["dataset"] == "msmarco-mini"
    ids = [r["id"] for r in record["retrieved"]]
    assert len(ids) == len(set(ids)) == 29 + DISTRACTORS  # one entry per document, not per chunk
    scores = [r["score"] for r in record["retrieved"]]
    assert scores == sorted(scores, reverse=True)
    assert set(record["metrics"]) == set(first.summary["results"][0]["summary"])


def test_the_run_folder_holds_everything_to_trust_and_repeat_it(
    two_sweeps: tuple[EvalOutcome, EvalOutcome],
) -> None:
    run_dir = two_sweeps[0].run_dir
    assert run_dir.parent.name == "runs"
    stamp, _, short_hash = run_dir.name.rpartition("-")
    assert len(short_hash) == 7 and stamp[:8].isdigit()
    configs = sorted(p.name for p in (run_dir / "configs").iterdir())
    assert configs == sorted(
        f"{v}.yaml"
        for v in (
            "chunk_size=64,top_k=3",
            "chunk_size=64,top_k=5",
            "chunk_size=256,top_k=3",
            "chunk_size=256,top_k=5",
        )
    )
    resolved = yaml.safe_load((run_dir / "configs" / "chunk_size=64,top_k=5.yaml").read_text())
    assert resolved["chunking"]["chunk_size"] == 64 and resolved["query"]["top_k"] == 5
    manifests = list((run_dir / "manifests").glob("*.json"))
    assert len(manifests) == 2
    assert {json.loads(p.read_text())["loader"]["records"] for p in manifests} == {
        str(next(iter(two_sweeps[0].run.datasets)).corpus_path)
    }
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run_id"] == run_dir.name and len(summary["results"]) == 4
    report = (run_dir / "report.md").read_text()
    assert "| variant | hit@1 |" in report and "chunk_size=256,top_k=5" in report
    assert "![metrics by variant](chart.png)" in report and "## Indexes" in report
    assert "retrieval p50 / p95 (ms)" in report and "tokens out" not in report  # no answers here
    assert (run_dir / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert yaml.safe_load((run_dir / "spec.yaml").read_text())["grid"]["query.top_k"] == [3, 5]


def test_fail_under_gates(two_sweeps: tuple[EvalOutcome, EvalOutcome], workspace: Path) -> None:
    assert parse_gates(["NDCG@10=0.6", "f1=0.2"]) == {"ndcg@10": 0.6, "f1": 0.2}
    for bad, message in (
        ("ndcg@10", "expected METRIC=VALUE"),
        ("ndcg=0.5", "unknown metric"),
        ("f1=x", "number"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_gates([bad])
    spec = make_spec(workspace / "sweep.yaml", fail_under={"hit@10": 0.5, "mrr@10": 1.01})
    outcome = evaluate(spec, out=workspace / "gated", chart=False)
    assert len(outcome.failures) == 4 and all(f.startswith("mrr@10 = ") for f in outcome.failures)
    assert not (outcome.run_dir / "chart.png").exists()


def test_compare_reports_deltas_and_flipped_questions(two_sweeps: tuple[EvalOutcome, EvalOutcome]) -> None:
    first, second = two_sweeps
    comparison = compare_runs(first.run_dir, second.run_dir)
    assert len(comparison.pairings) == 4 and comparison.metric == "hit@10"
    for pairing in comparison.pairings:
        assert all(d["delta"] == 0.0 for d in pairing.deltas.values())
        assert not pairing.flipped_up and not pairing.flipped_down
    text = render_comparison(comparison)
    assert "ndcg@10" in text and "+0.0000" in text and "0 improved, 0 regressed" in text


def write_run(folder: Path, variant: str, per_question: dict[str, float]) -> Path:
    """A saved run reduced to what compare reads (two runs that differ, as two configs would)."""
    folder.mkdir(parents=True)
    mean = sum(per_question.values()) / len(per_question)
    summary = {
        "run_id": folder.name,
        "results": [{"variant": variant, "dataset": "d", "summary": {"hit@10": mean}}],
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "questions.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "variant": variant,
                    "dataset": "d",
                    "id": q,
                    "question": f"question {q}",
                    "metrics": {"hit@10": v},
                }
            )
            + "\n"
            for q, v in per_question.items()
        )
    )
    return folder


def test_compare_finds_the_questions_that_flipped(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", "base", {"q1": 1.0, "q2": 0.0, "q3": 1.0})
    b = write_run(tmp_path / "b", "chunk_size=128", {"q1": 0.0, "q2": 1.0, "q3": 1.0})
    comparison = compare_runs(a, b)
    (pairing,) = comparison.pairings  # one result per run on the same dataset: paired by dataset
    assert [x["id"] for x in pairing.flipped_up] == ["q2"]
    assert [x["id"] for x in pairing.flipped_down] == ["q1"]
    assert pairing.deltas["hit@10"]["delta"] == 0.0
    text = render_comparison(comparison)
    assert "base -> chunk_size=128 @ d" in text and "+ q2: 0.000 -> 1.000" in text and "- q1" in text


@pytest.mark.slow
def test_cli_eval_a_config_with_a_gate_that_fails(workspace: Path, mini_msmarco: Path) -> None:
    result = cli(
        "eval",
        str(workspace / "config.yaml"),
        "--dataset",
        str(mini_msmarco),
        "--out",
        str(workspace / "cli-runs"),
        "--set",
        "query.top_k=2",
        "--fail-under",
        "ndcg@10=1.01",
        "--fail-under",
        "hit@10=0.5",
        "--json",
    )
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert set(data["summary"]) >= {"hit@1", "mrr@10", "ndcg@10", "recall@100"}
    assert all(isinstance(v, float) for v in data["summary"].values())
    assert data["failed_checks"] == [
        f"ndcg@10 = {data['summary']['ndcg@10']:.4f} < 1.01 for base @ msmarco_mini0"
    ]
    assert "fail-under" in result.stderr and "ndcg@10" in result.stderr and "Traceback" not in result.stderr
    assert Path(data["run_dir"], "report.md").is_file()

    compare = cli("eval", "compare", data["run_dir"], data["run_dir"])
    assert compare.returncode == 0, compare.stderr
    assert "ndcg@10" in compare.stdout and "0 improved, 0 regressed" in compare.stdout


@pytest.mark.slow
def test_cli_errors_are_one_paragraph_before_any_work(workspace: Path, tmp_path: Path) -> None:
    spec = tmp_path / "modes.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "config": str(workspace / "config.yaml"),
                "datasets": [str(SAMPLE_DIR.parent / "sample_questions.jsonl")],
                "grid": {"retrieval.mod": ["vector", "bm25"]},
            }
        )
    )
    result = cli("eval", str(spec), "--out", str(tmp_path / "runs"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "variant 'mod=vector'" in result.stderr and "unknown key 'mod'" in result.stderr
    assert not (tmp_path / "runs").exists()

    missing = cli("eval", str(workspace / "config.yaml"))
    assert missing.returncode == 2 and "--dataset PATH" in missing.stderr

    helps = cli("eval", "--help")
    assert helps.returncode == 0 and "compare" in helps.stdout and "generate" in helps.stdout
    compare_help = cli("eval", "compare", "--help")
    assert compare_help.returncode == 0 and "run_a" in compare_help.stdout
    not_a_run = cli("eval", "compare", str(tmp_path), str(tmp_path))
    assert not_a_run.returncode == 2 and "is not an eval run" in not_a_run.stderr
