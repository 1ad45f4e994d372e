"""Answers and the LLM judge on the real llama.cpp path (the tiny GGUF: its text is noise, so these
tests check structure, counting and timing, never wording); evidence-based retrieval for LlamaIndex
datasets; the Paul Graham set; and drafting questions with constrained JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.components.llm_loader import load_llm
from indexer.config.models import LLMConfig
from indexer.eval.session import evaluate, make_spec
from indexer.eval.structured import StructuredOutputError, ask_json
from tests.adversarial.helpers import cli
from tests.conftest import SAMPLE_DIR, SAMPLE_QUESTIONS, SHARED_DATA, write_config

PAUL_GRAHAM = SHARED_DATA / "paul_graham_essay"
# One llama.cpp thread: the tiny model gains nothing from more, and on a busy machine spinning
# threads cost far more than they give.
ONE_THREAD = {"n_threads": 1}


@pytest.mark.slow
def test_answers_are_timed_scored_and_judged(tmp_path: Path, tiny_gguf: Path) -> None:
    config = write_config(tmp_path, SAMPLE_DIR, model_path=tiny_gguf, llm=ONE_THREAD, query={"top_k": 1})
    spec = make_spec(config, datasets=[SAMPLE_QUESTIONS], limit=2, judge=True)
    outcome = evaluate(spec, out=tmp_path / "runs")
    (result,) = outcome.summary["results"]
    assert result["counts"]["answered"] == 2 and result["counts"]["answer_errors"] == 0
    summary = result["summary"]
    for name in ("exact_match", "f1"):
        assert 0.0 <= summary[name] <= 1.0
    assert -1.0 <= summary["semantic_similarity"] <= 1.0
    assert set(result["latency"]) == {"retrieval_ms", "ttft_ms", "generation_ms", "tokens"}
    assert result["latency"]["tokens"]["completion_mean"] > 0

    records = [json.loads(x) for x in (outcome.run_dir / "questions.jsonl").read_text().splitlines()]
    for record in records:
        assert isinstance(record["answer"], str) and record["references"]
        assert len(record["sources"]) == 1
        assert record["tokens"]["prompt"] > 0 and 0 < record["tokens"]["completion"] <= 16 + 2
        latency = record["latency"]
        assert 0 < latency["ttft_ms"] <= latency["generation_ms"]
        assert set(record["metrics"]) >= {"hit@1", "ndcg@10", "exact_match", "f1", "semantic_similarity"}
        for name in ("faithfulness", "relevancy"):
            verdict = record["judge"][name]
            # The grammar makes even the noise model's reply parse into a valid verdict.
            assert verdict["verdict"] in ("yes", "partly", "no") and "error" not in verdict
            assert record["metrics"][name] == {"yes": 1.0, "partly": 0.5, "no": 0.0}[verdict["verdict"]]
    assert result["counts"]["judge"]["faithfulness"] == {"scored": 2, "failed": 0, "failures": []}
    report = (outcome.run_dir / "report.md").read_text()
    assert "ttft p50 / p95 (ms)" in report and "faithfulness: 2 verdicts, 0 judge failures" in report


def test_judge_failures_are_counted_and_reported_never_scored(tmp_path: Path, tiny_gguf: Path) -> None:
    # Prompts of known size (the tiny model spends about a token per character): a 1024-token window
    # (llama.cpp rounds n_ctx up to a multiple of 256) fits the answer's prompt (~740 tokens + 16 to
    # answer) and the relevancy judge's (~360 + 400 for its verdict), not the faithfulness judge's
    # (~790 + 400).
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "care.txt").write_text("The desiccant pack in the mast is replaced every six months. " * 8)
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        '{"id": "a", "question": "How often is the desiccant replaced?", "answers": ["every six months"]}\n'
        '{"id": "b", "question": "Where is the desiccant pack?", "answers": ["in the mast"]}\n'
    )
    config = write_config(
        tmp_path, docs, model_path=tiny_gguf, llm={"n_ctx": 1024, **ONE_THREAD}, query={"top_k": 1}
    )
    spec = make_spec(config, datasets=[questions], judge=True, metrics=["f1"])
    outcome = evaluate(spec, out=tmp_path / "runs", chart=False)
    (result,) = outcome.summary["results"]
    assert result["counts"]["answered"] == 2
    faithfulness = result["counts"]["judge"]["faithfulness"]
    assert (faithfulness["scored"], faithfulness["failed"]) == (0, 2)
    assert "exceed llm.n_ctx" in faithfulness["failures"][0]
    assert "faithfulness" not in result["summary"]  # no verdict is not a zero
    assert result["counts"]["judge"]["relevancy"]["scored"] == 2
    assert "relevancy" in result["summary"]
    assert "faithfulness: 0 verdicts, 2 judge failures" in (outcome.run_dir / "report.md").read_text()


def test_a_reply_cut_off_before_the_json_closes_is_a_structured_failure(tiny_gguf: Path) -> None:
    from indexer.eval.judge import VERDICT_SCHEMA, _messages

    llm, _ = load_llm(LLMConfig(model_path=tiny_gguf, n_ctx=1024, max_new_tokens=8))
    with pytest.raises(StructuredOutputError, match="cut off at max_tokens"):
        ask_json(llm, _messages("Is this fine?"), VERDICT_SCHEMA, max_tokens=4)


@pytest.mark.slow
def test_reference_contexts_are_matched_against_retrieved_text(tmp_path: Path) -> None:
    dataset = tmp_path / "rag_dataset.json"
    example = {
        "query": "Which radio band does the European variant use?",
        "reference_contexts": [
            "AS-868, the European variant, uses the 868 MHz band.",
            "This sentence appears in no document of the corpus at all, whatever is retrieved.",
        ],
        "reference_answer": "868 MHz",
    }
    dataset.write_text(json.dumps({"examples": [example]}))
    config = write_config(tmp_path, SAMPLE_DIR, llm={"provider": "none"})
    from indexer.api import evaluate as api_evaluate  # the Python API, over the same core

    outcome = api_evaluate(
        config,
        datasets=[dataset],
        metrics=["hit@10", "recall@10"],
        answers=False,
        out=tmp_path / "runs",
        chart=False,
    )
    (result,) = outcome.summary["results"]
    # One of two reference contexts found among the chunks: hit, and half the evidence recalled.
    assert result["summary"] == {"hit@10": 1.0, "recall@10": 0.5}
    assert result["counts"]["answered"] == 0


@pytest.mark.slow
@pytest.mark.shared_data(PAUL_GRAHAM)
def test_the_paul_graham_set_over_the_essay(tmp_path: Path, tiny_gguf: Path) -> None:
    config = write_config(
        tmp_path,
        PAUL_GRAHAM,
        model_path=tiny_gguf,
        data={"required_exts": [".txt"], "exclude": ["*LFS_POINTER*", "PROVENANCE*"]},
        chunking={"chunk_size": 512, "chunk_overlap": 32},
        query={"top_k": 1},
        llm={"max_new_tokens": 8, **ONE_THREAD},
    )
    dataset = PAUL_GRAHAM / "llamaindex_pg_rag_dataset_44qa_mapped.json"
    spec = make_spec(config, datasets=[dataset], limit=2, metrics=["hit@1", "f1", "semantic_similarity"])
    outcome = evaluate(spec, out=tmp_path / "runs", chart=False)
    (result,) = outcome.summary["results"]
    (index,) = outcome.summary["indexes"].values()
    assert index["documents"] == 1 and index["chunks"] > 10  # the essay alone, chunked
    assert result["summary"]["hit@1"] == 1.0  # a single relevant file: every chunk is from it
    assert result["counts"]["answered"] == 2
    assert set(result["summary"]) == {"hit@1", "f1", "semantic_similarity"}


@pytest.mark.slow
def test_generate_drafts_questions_that_always_parse(tmp_path: Path, tiny_gguf: Path) -> None:
    config = write_config(
        tmp_path, SAMPLE_DIR, model_path=tiny_gguf, llm={"max_new_tokens": 16, **ONE_THREAD}
    )
    out = tmp_path / "drafts" / "questions.jsonl"
    result = cli("eval", "generate", str(config), "--n", "2", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["written"] + summary["failed"] == summary["sampled"] == 2
    assert summary["written"] == 2  # the grammar makes even the noise model's drafts parse
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    files = {p.relative_to(SAMPLE_DIR).as_posix() for p in SAMPLE_DIR.rglob("*") if p.is_file()}
    assert [x["id"] for x in lines] == ["gen-0001", "gen-0002"]
    for line in lines:
        assert line["question"] and len(line["answers"]) == 1 and line["answers"][0]
        assert line["relevant_files"][0] in files and line["source"]["chunk"]
    # The drafts are a dataset `indexer eval` reads as is.
    from indexer.eval.datasets import load_dataset

    assert len(load_dataset(out).questions) == 2

    (tmp_path / "no-model").mkdir()
    no_model = write_config(tmp_path / "no-model", SAMPLE_DIR)
    failed = cli("eval", "generate", str(no_model), "--out", str(tmp_path / "q.jsonl"))
    assert failed.returncode == 2 and "llm.model_path" in failed.stderr and "Traceback" not in failed.stderr


@pytest.mark.slow
def test_variants_sharing_an_index_answer_with_their_own_settings(tmp_path: Path, tiny_gguf: Path) -> None:
    write_config(tmp_path, SAMPLE_DIR, model_path=tiny_gguf, llm={"max_new_tokens": 4, **ONE_THREAD})
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        json.dumps(
            {
                "config": "config.yaml",
                "datasets": [str(SAMPLE_QUESTIONS)],
                "grid": {"query.top_k": [1, 3]},
                "metrics": ["f1"],
            }
        )
    )
    outcome = evaluate(make_spec(spec_path, limit=1), out=tmp_path / "runs", chart=False)
    assert len(outcome.summary["indexes"]) == 1
    records = [json.loads(x) for x in (outcome.run_dir / "questions.jsonl").read_text().splitlines()]
    assert [(r["variant"], len(r["sources"])) for r in records] == [("top_k=1", 1), ("top_k=3", 3)]
