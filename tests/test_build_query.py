"""Build the sample corpus and query it, through the Python API, on the real components."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from indexer import Indexer
from indexer.errors import DataError, IndexerError, IndexMismatchError
from tests.conftest import ROOT, sample_questions


def test_build_summary_counts_documents_and_chunks(built_sample: Path) -> None:
    manifest = json.loads((built_sample.parent / "storage" / "indexer-manifest.json").read_text())
    files = manifest["files"]
    assert len(files) == 10
    assert sum(f["chunks"] for f in files.values()) >= len(files)
    assert manifest["embedding"]["dimension"] == 384
    assert manifest["embedding"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest["chunking"] == {"chunk_size": 256, "chunk_overlap": 32}


@pytest.mark.parametrize("item", sample_questions(), ids=lambda q: q["id"])
def test_retrieval_finds_the_known_source(built_sample: Path, item: dict) -> None:
    sources = Indexer.from_config(built_sample).retrieve(item["question"], top_k=4)
    assert len(sources) == 4
    assert [s.rank for s in sources] == [1, 2, 3, 4]
    assert any(s.file in item["relevant_files"] for s in sources[:3]), [s.file for s in sources]
    scores = [s.score for s in sources]
    assert scores == sorted(scores, reverse=True) and -1.0 <= scores[-1] <= scores[0] <= 1.0


def test_retrieval_ranks_the_known_source_first_for_most_questions(built_sample: Path) -> None:
    ix = Indexer.from_config(built_sample)
    items = sample_questions()
    firsts = [ix.retrieve(q["question"], top_k=1)[0].file in q["relevant_files"] for q in items]
    assert sum(firsts) >= 0.8 * len(items), firsts


def test_sources_carry_citation_metadata(built_sample: Path) -> None:
    source = Indexer.from_config(built_sample).retrieve("What does error E-214 mean?", top_k=1)[0]
    data = source.to_dict()
    assert {"rank", "score", "file", "doc_id", "text", "chunk_id", "start_char", "end_char"} <= data.keys()
    assert data["text"] and data["doc_id"] == data["file"]


@pytest.mark.slow
def test_reload_in_a_fresh_process_gives_the_same_top_sources(built_sample: Path) -> None:
    questions = [q["question"] for q in sample_questions()]
    here = [[s.chunk_id for s in Indexer.from_config(built_sample).retrieve(q, top_k=3)] for q in questions]
    script = (
        "import json, sys\n"
        "from indexer import Indexer\n"
        "ix = Indexer.from_config(sys.argv[1])\n"
        "qs = json.loads(sys.argv[2])\n"
        "print(json.dumps([[s.chunk_id for s in ix.retrieve(q, top_k=3)] for q in qs]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(built_sample), json.dumps(questions)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here


def test_query_answers_with_the_tiny_model_and_streams(built_sample: Path) -> None:
    ix = Indexer.from_config(built_sample)
    stream = ix.stream("Which radio frequency does the European mast use?", top_k=2)
    assert len(stream.sources) == 2
    tokens = list(stream)
    assert len(tokens) >= 2 and all(isinstance(t, str) for t in tokens)
    assert stream.finished and stream.answer == "".join(tokens)
    answer = ix.query("Which radio frequency does the European mast use?", top_k=2)
    assert isinstance(answer.answer, str) and answer.answer
    assert [s.file for s in answer.sources] == [s.file for s in stream.sources]


@pytest.mark.slow
def test_missing_model_falls_back_to_retrieval_with_a_notice(built_sample_without_model: Path) -> None:
    ix = Indexer.from_config(built_sample_without_model)
    answer = ix.query("How is the rain gauge calibrated?")
    assert answer.answer is None
    assert len(answer.sources) == 4
    assert answer.notice and "llm.model_path" in answer.notice and "llm.repo_id" in answer.notice


@pytest.mark.slow
def test_missing_model_is_an_error_when_required(built_sample_without_model: Path) -> None:
    ix = Indexer.from_config(built_sample_without_model, {"llm.required": True})
    with pytest.raises(IndexerError, match=r"llm\.model_path is not set and llm\.required"):
        ix.query("How is the rain gauge calibrated?")


@pytest.mark.slow
def test_unchanged_rebuild_embeds_nothing_and_changes_are_synced(sample_copy: Path, make_config) -> None:
    ix = Indexer.from_config(make_config(sample_copy))
    first = ix.build()
    assert (first.added, first.updated, first.deleted) == (10, 0, 0)
    total = first.chunks

    again = ix.build()
    assert (again.added, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 10)
    assert again.chunks_embedded == 0 and again.chunks == total

    (sample_copy / "glossary.txt").write_text("Zephyr bracket: the only part painted teal.\n")
    (sample_copy / "CHANGELOG.md").unlink()
    (sample_copy / "guides" / "new.md").write_text("# Winter mode\nThe heater runs below -20 C.\n")
    changed = ix.build()
    assert (changed.added, changed.updated, changed.deleted, changed.unchanged) == (1, 1, 1, 8)
    store = ix.index.chunk_store(create=False)
    assert store is not None and store.count() == changed.chunks
    top = ix.retrieve("Which part is painted teal?", top_k=1)[0]
    assert top.file == "glossary.txt" and "teal" in top.text
    assert all(s.file != "CHANGELOG.md" for s in ix.retrieve("firmware release notes", top_k=10))


@pytest.mark.slow
def test_binary_and_empty_files_are_skipped_and_listed(sample_copy: Path, make_config) -> None:
    (sample_copy / "blob.txt").write_bytes(bytes(range(256)) * 8)
    (sample_copy / "empty.md").write_text("")
    summary = Indexer.from_config(make_config(sample_copy)).build()
    skipped = {s["file"]: s["reason"] for s in summary.skipped}
    assert set(skipped) == {"blob.txt", "empty.md"}
    assert "binary" in skipped["blob.txt"] and "no text" in skipped["empty.md"]
    assert summary.documents == 10


def test_missing_and_empty_data_folders_are_clear_errors(tmp_path: Path, make_config) -> None:
    with pytest.raises(DataError, match="does not exist"):
        Indexer.from_config(make_config(tmp_path / "nowhere")).build()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.xyz").write_text("not a supported type")
    with pytest.raises(DataError, match="no documents to index"):
        Indexer.from_config(make_config(tmp_path / "empty")).build()


def test_query_before_build_is_a_clear_error(make_config) -> None:
    with pytest.raises(IndexerError, match="run `indexer build CONFIG` first"):
        Indexer.from_config(make_config()).retrieve("anything")


@pytest.mark.slow
def test_changed_embedding_settings_refuse_to_mix_vector_spaces(sample_copy: Path, make_config) -> None:
    config = make_config(sample_copy)
    Indexer.from_config(config).build()
    other = Indexer.from_config(
        config, {"embedding.query_prefix": "query: ", "embedding.passage_prefix": "passage: "}
    )
    with pytest.raises(IndexMismatchError, match=r"(?s)query_prefix.*--rebuild"):
        other.retrieve("anything")
    with pytest.raises(IndexMismatchError, match="passage_prefix"):
        other.build()
    rechunked = Indexer.from_config(config, {"chunking.chunk_size": 128})
    with pytest.raises(IndexMismatchError, match=r"chunking\.chunk_size: index has 256, config gives 128"):
        rechunked.build()
    # The failed runs changed nothing: the original index still answers.
    dense = Indexer.from_config(config, {"retrieval.mode": "vector"})
    assert dense.retrieve("rain gauge calibration")[0].file == "guides/calibration.md"
    summary = rechunked.build(rebuild=True)
    assert summary.added == 10 and summary.deleted == 0


@pytest.mark.slow
def test_a_script_without_a_main_guard_builds_with_chunking_workers(make_config, tmp_path: Path) -> None:
    """The README's Python API example saved as a file: multiprocessing would run the script again
    in each chunking worker (a build inside every worker, which fails), had the workers not been
    started without the parent's ``__main__``."""
    config = make_config(llm={"provider": "none"}, build={"workers": 2})
    script = tmp_path / "example.py"
    script.write_text(
        "from indexer import Indexer\n"
        f"ix = Indexer.from_config({str(config)!r})\n"
        "print('chunks', ix.build().chunks)\n"
        "print('top', ix.retrieve('rain gauge calibration')[0].file)\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("chunks ") == 1, result.stdout  # the build ran once, here
    assert int(result.stdout.split("chunks ")[1].split()[0]) > 0
    assert "top " in result.stdout
