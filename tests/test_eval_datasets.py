"""Reading question sets: BEIR folders (qrels with or without a header), JSONL questions,
LlamaIndex labelled RAG datasets, the shared real data, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.errors import DataError
from indexer.eval.datasets import load_dataset, read_corpus
from tests.conftest import SHARED_DATA

MSMARCO = SHARED_DATA / "msmarco_subset"
PAUL_GRAHAM = SHARED_DATA / "paul_graham_essay" / "llamaindex_pg_rag_dataset_44qa_mapped.json"


def write_beir(folder: Path, qrels_text: str, qrels_name: str = "test.tsv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text(
        "\n".join(
            json.dumps({"_id": i, "title": t, "text": x})
            for i, t, x in [
                ("d1", "Rain", "A gauge tips at 0.2 mm."),
                ("d2", "", "Wind."),
                ("d3", "", "Sun."),
            ]
        )
    )
    (folder / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "rain gauge tip"}\n{"_id": "q2", "text": "wind"}\n{"_id": "q3", "text": "x"}\n'
    )
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / qrels_name).write_text(qrels_text)
    return folder


def test_beir_folder_with_graded_qrels_and_a_header(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "set", "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq2\td2\t1\n")
    dataset = load_dataset(folder)
    assert dataset.kind == "beir" and dataset.name == "set"
    assert dataset.corpus_path == folder / "corpus.jsonl"
    # q3 has no judgements: BEIR evaluates only judged queries.
    assert [q.id for q in dataset.questions] == ["q1", "q2"]
    assert dataset.questions[0].qrels == {"d1": 2, "d2": 0}
    records = list(read_corpus(dataset.corpus_path))
    assert [(r.id, r.title) for r in records] == [("d1", "Rain"), ("d2", ""), ("d3", "")]
    assert records[0].content() == "Rain\nA gauge tips at 0.2 mm."


def test_qrels_without_header_and_trec_four_columns(tmp_path: Path) -> None:
    plain = load_dataset(write_beir(tmp_path / "a", "q1\td1\t1\n"))
    assert plain.questions[0].qrels == {"d1": 1}
    trec = load_dataset(write_beir(tmp_path / "b", "q2 0 d2 3\n".replace(" ", "\t")))
    assert [(q.id, q.qrels) for q in trec.questions] == [("q2", {"d2": 3})]


def test_named_queries_and_qrels_files(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "set", "q1\td1\t1\n", qrels_name="dev.tsv")
    (folder / "queries.small.jsonl").write_text('{"_id": "q1", "text": "only this"}\n')
    dataset = load_dataset(folder, queries="queries.small.jsonl", qrels="qrels/dev.tsv", name="mine")
    assert dataset.name == "mine" and [q.question for q in dataset.questions] == ["only this"]


def test_bad_beir_input_names_file_and_line(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "set", "q1\td1\tbad\nq1\td1\talso-bad\n")
    with pytest.raises(DataError, match=r"test\.tsv, line 2: score 'also-bad' is not a number"):
        load_dataset(folder)
    (folder / "corpus.jsonl").unlink()
    with pytest.raises(DataError, match=r"not a BEIR dataset: its corpus file corpus\.jsonl is missing"):
        load_dataset(folder)
    with pytest.raises(DataError, match=r"qrels file .*nope\.tsv not found"):
        load_dataset(write_beir(tmp_path / "other", "q1\td1\t1\n"), qrels="qrels/nope.tsv")


def test_jsonl_questions(tmp_path: Path) -> None:
    path = tmp_path / "questions.jsonl"
    path.write_text(
        '{"id": "a", "question": "How?", "answers": ["so"], "relevant_files": ["./guides/x.md"]}\n'
        "\n"
        '{"question": "Why?", "answer": "because"}\n'
    )
    dataset = load_dataset(path, limit=5)
    assert dataset.kind == "jsonl" and dataset.has_answers
    first, second = dataset.questions
    assert (first.id, first.answers, first.qrels) == ("a", ["so"], {"guides/x.md": 1})
    assert (second.id, second.answers, second.qrels) == ("q3", ["because"], {})
    assert len(load_dataset(path, limit=1).questions) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"question": "ok"}\n{"question": ""}\n', r"line 2: each line needs a non-empty 'question'"),
        ('{"question": "ok"}\nnot json\n', r"line 2: not valid JSON"),
        ('{"question": "ok", "answers": [1]}\n', r"line 1: 'answers' must be a string or a list of strings"),
        ('{"id": "x", "question": "a"}\n{"id": "x", "question": "b"}\n', r"question id 'x' appears twice"),
    ],
)
def test_bad_jsonl_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_dataset(path)


def test_llamaindex_labelled_rag_dataset(tmp_path: Path) -> None:
    path = tmp_path / "rag_dataset.json"
    path.write_text(
        json.dumps(
            {
                "examples": [
                    {
                        "query": "What did the author do?",
                        "query_by": {"model_name": "gpt-4", "type": "ai"},
                        "reference_contexts": ["He wrote essays.", "And programs."],
                        "reference_answer": "Wrote essays and programs.",
                        "reference_answer_by": {"model_name": "gpt-4", "type": "ai"},
                    }
                ]
            }
        )
    )
    dataset = load_dataset(path)
    assert dataset.kind == "llamaindex"
    question = dataset.questions[0]
    assert question.id == "ex1" and question.answers == ["Wrote essays and programs."]
    assert question.contexts == ["He wrote essays.", "And programs."]
    path.write_text('{"examples": [{"reference_answer": "x"}]}')
    with pytest.raises(DataError, match=r"example 1: needs a non-empty 'query'"):
        load_dataset(path)


def test_unknown_paths_and_kinds(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset not found"):
        load_dataset(tmp_path / "absent.jsonl")
    other = tmp_path / "questions.csv"
    other.write_text("a,b\n")
    with pytest.raises(DataError, match="not a dataset: expected a BEIR folder"):
        load_dataset(other)


@pytest.mark.shared_data(MSMARCO)
def test_the_shared_msmarco_subset() -> None:
    dataset = load_dataset(MSMARCO, queries="queries.judged.jsonl", qrels="qrels/test.normalized.tsv")
    assert len(dataset.questions) == 43
    assert sum(len(q.qrels) for q in dataset.questions) == 4102
    assert {g for q in dataset.questions for g in q.qrels.values()} == {1, 2, 3}
    assert sum(1 for _ in read_corpus(MSMARCO / "corpus.jsonl")) == 5000
    # The header-less original qrels read the same.
    plain = load_dataset(MSMARCO, queries="queries.judged.jsonl", qrels="qrels/test.tsv")
    assert [q.qrels for q in plain.questions] == [q.qrels for q in dataset.questions]


@pytest.mark.shared_data(PAUL_GRAHAM)
def test_the_shared_paul_graham_questions() -> None:
    dataset = load_dataset(PAUL_GRAHAM)
    assert len(dataset.questions) == 44
    assert all(q.answers and q.qrels == {"paul_graham_essay.txt": 1} for q in dataset.questions)
    assert dataset.questions[0].id == "TC_001"
