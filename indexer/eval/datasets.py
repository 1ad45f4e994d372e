"""Question sets: BEIR folders, JSONL questions over the config's own documents, and LlamaIndex's
labelled RAG dataset JSON, read into one shape with errors that name the file and line.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from indexer.errors import DataError
from indexer.ingestion.records import TextRecord

DatasetKind = Literal["beir", "jsonl", "llamaindex"]


@dataclass
class Question:
    id: str
    question: str
    answers: list[str] = field(default_factory=list)
    # Judged documents: BEIR corpus ids or files of the config's corpus -> graded relevance.
    qrels: dict[str, int] = field(default_factory=dict)
    # Evidence passages (LlamaIndex ``reference_contexts``), matched against retrieved text.
    contexts: list[str] = field(default_factory=list)


@dataclass
class Dataset:
    name: str
    kind: DatasetKind
    path: Path
    questions: list[Question]
    corpus_path: Path | None = None  # BEIR only: its own corpus, indexed apart from the config's

    @property
    def has_answers(self) -> bool:
        return any(q.answers for q in self.questions)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path),
            "questions": len(self.questions),
            "judged": sum(1 for q in self.questions if q.qrels or q.contexts),
            "with_answers": sum(1 for q in self.questions if q.answers),
            "corpus": str(self.corpus_path) if self.corpus_path else None,
        }


def load_dataset(
    path: str | Path,
    *,
    name: str | None = None,
    queries: str | None = None,
    qrels: str | None = None,
    limit: int | None = None,
) -> Dataset:
    """Read the dataset at ``path``: a BEIR folder (``corpus.jsonl``, ``queries.jsonl``,
    ``qrels/*.tsv``), a ``.jsonl`` of questions, or a LlamaIndex ``.json``.

    For BEIR, ``queries`` and ``qrels`` name files inside the folder (default ``queries.jsonl`` and
    ``qrels/test.tsv``); as in BEIR, only queries with judgements are evaluated.
    """
    source = Path(path).expanduser().resolve()
    if not source.exists():
        raise DataError(f"dataset not found: {source}")
    if source.is_dir():
        dataset = _load_beir(source, queries, qrels)
    elif queries or qrels:
        raise DataError(f"{source}: queries/qrels options apply only to a BEIR dataset folder")
    elif source.suffix.lower() == ".jsonl":
        dataset = Dataset(source.stem, "jsonl", source, _load_jsonl_questions(source))
    elif source.suffix.lower() == ".json":
        dataset = Dataset(source.stem, "llamaindex", source, _load_llamaindex(source))
    else:
        raise DataError(
            f"{source}: not a dataset: expected a BEIR folder (corpus.jsonl, queries.jsonl, qrels/), "
            "a .jsonl of questions or a LlamaIndex labelled RAG dataset .json"
        )
    if not dataset.questions:
        raise DataError(f"{source}: the dataset has no questions to evaluate")
    if limit is not None:
        dataset.questions = dataset.questions[:limit]
    if name:
        dataset.name = name
    _check_unique_ids(dataset)
    return dataset


def read_corpus(path: Path) -> Iterator[TextRecord]:
    """The records of a BEIR ``corpus.jsonl``, in file order."""
    for line_no, item in _jsonl(path):
        doc_id = item.get("_id")
        if doc_id is None or str(doc_id) == "":
            raise DataError(f"{path}, line {line_no}: a corpus record needs an '_id'")
        text = item.get("text")
        if not isinstance(text, str):
            raise DataError(f"{path}, line {line_no}: record {doc_id!r} needs a 'text' string")
        title = item.get("title") or ""
        yield TextRecord(id=str(doc_id), text=text, title=str(title))


def _load_beir(folder: Path, queries: str | None, qrels: str | None) -> Dataset:
    corpus = folder / "corpus.jsonl"
    queries_path = folder / (queries or "queries.jsonl")
    for needed, what in ((corpus, "corpus"), (queries_path, "queries")):
        if not needed.is_file():
            raise DataError(f"{folder}: not a BEIR dataset: its {what} file {needed.name} is missing")
    qrels_path = folder / qrels if qrels else _default_qrels(folder)
    if not qrels_path.is_file():
        raise DataError(f"{folder}: qrels file {qrels_path} not found")
    judgements = _read_qrels(qrels_path)
    texts: dict[str, str] = {}
    for line_no, item in _jsonl(queries_path):
        if "_id" not in item or not isinstance(item.get("text"), str):
            raise DataError(f"{queries_path}, line {line_no}: a query needs '_id' and 'text'")
        texts[str(item["_id"])] = item["text"]
    questions = [
        Question(id=qid, question=text, qrels=judgements[qid])
        for qid, text in texts.items()
        if any(g > 0 for g in judgements.get(qid, {}).values())
    ]
    return Dataset(folder.name, "beir", folder, questions, corpus_path=corpus)


def _default_qrels(folder: Path) -> Path:
    candidates = [folder / "qrels" / "test.tsv", *sorted((folder / "qrels").glob("*.tsv"))]
    return next((c for c in candidates if c.is_file()), folder / "qrels" / "test.tsv")


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``query-id, corpus-id, score`` rows, tab-separated, with or without BEIR's header line."""
    judgements: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for line_no, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) == 4:  # TREC qrels: query-id, iteration, doc-id, grade
                row = [row[0], row[2], row[3]]
            if len(row) != 3:
                raise DataError(f"{path}, line {line_no}: expected query-id, corpus-id, score")
            try:
                grade = int(float(row[2]))
            except ValueError:
                if line_no == 1:
                    continue  # the header line
                raise DataError(f"{path}, line {line_no}: score {row[2]!r} is not a number") from None
            judgements.setdefault(row[0].strip(), {})[row[1].strip()] = grade
    return judgements


def _load_jsonl_questions(path: Path) -> list[Question]:
    questions = []
    for line_no, item in _jsonl(path):
        text = item.get("question")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}, line {line_no}: each line needs a non-empty 'question'")
        answers = _string_list(item.get("answers", item.get("answer")), path, line_no, "answers")
        files = _string_list(item.get("relevant_files"), path, line_no, "relevant_files")
        questions.append(
            Question(
                id=str(item.get("id", f"q{line_no}")),
                question=text.strip(),
                answers=answers,
                qrels={_posix(f): 1 for f in files},
                contexts=_string_list(item.get("reference_contexts"), path, line_no, "reference_contexts"),
            )
        )
    return questions


def _load_llamaindex(path: Path) -> list[Question]:
    """LlamaIndex's ``LabelledRagDataset`` JSON (``{"examples": [...]}``) or a bare list of its
    examples; ``expected_sources`` (file names) are read as relevant files when present."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the dataset JSON: {exc}") from None
    examples = data.get("examples") if isinstance(data, dict) else data
    if not isinstance(examples, list):
        raise DataError(f"{path}: expected {{'examples': [...]}} (a LlamaIndex labelled RAG dataset)")
    questions = []
    for number, item in enumerate(examples, start=1):
        where = f"example {number}"
        if not isinstance(item, dict) or not isinstance(item.get("query"), str) or not item["query"].strip():
            raise DataError(f"{path}, {where}: needs a non-empty 'query'")
        answer = item.get("reference_answer")
        files = _string_list(item.get("expected_sources"), path, where, "expected_sources")
        questions.append(
            Question(
                id=str(item.get("id") or f"ex{number}"),
                question=item["query"].strip(),
                answers=[answer] if isinstance(answer, str) and answer.strip() else [],
                qrels={_posix(f): 1 for f in files},
                contexts=_string_list(item.get("reference_contexts"), path, where, "reference_contexts"),
            )
        )
    return questions


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}, line {line_no}: not valid JSON ({exc.msg})") from None
                if not isinstance(item, dict):
                    raise DataError(f"{path}, line {line_no}: expected a JSON object")
                yield line_no, item
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None


def _string_list(value: Any, path: Path, where: int | str, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v for v in value if v.strip()]
    place = f"line {where}" if isinstance(where, int) else where
    raise DataError(f"{path}, {place}: '{key}' must be a string or a list of strings")


def _posix(name: str) -> str:
    return re.sub(r"^\./", "", name.replace("\\", "/"))


def _check_unique_ids(dataset: Dataset) -> None:
    seen: set[str] = set()
    for question in dataset.questions:
        if question.id in seen:
            raise DataError(f"{dataset.path}: question id {question.id!r} appears twice")
        seen.add(question.id)
