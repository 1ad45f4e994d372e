"""Retrieval modes, filters, cutoff, de-duplication, top-k and the keyword index's life cycle, on
the real embedder, Chroma and bm25s over a corpus built for the purpose."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from indexer import Indexer
from indexer.errors import ConfigError
from indexer.index.keyword import KeywordIndex, keyword_file, query_terms, tokenize
from indexer.query.filters import parse_filter_options
from tests.adversarial.helpers import cli
from tests.conftest import write_config
from tests.support.retrieval_corpus import (
    BOTH_QUERY,
    CORPUS,
    IDENTIFIER_QUERY,
    PARAPHRASE_QUERY,
    write_corpus,
)


@pytest.fixture(scope="module")
def corpus_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("retrieval")
    config = write_config(folder, write_corpus(folder / "docs"), llm={"provider": "none"})
    Indexer.from_config(config).build()
    return config


def _files(config: Path, question: str, mode: str, top_k: int = 3, **overrides: object) -> list[str]:
    ix = Indexer.from_config(config, {"retrieval.mode": mode, **overrides})
    return [s.file for s in ix.retrieve(question, top_k=top_k)]


def test_keyword_search_finds_the_exact_identifier_that_dense_search_misses(corpus_config: Path) -> None:
    assert _files(corpus_config, IDENTIFIER_QUERY, "bm25", top_k=1) == ["parts/fan.md"]
    assert _files(corpus_config, IDENTIFIER_QUERY, "vector", top_k=1) != ["parts/fan.md"]
    assert _files(corpus_config, IDENTIFIER_QUERY, "hybrid", top_k=1) == ["parts/fan.md"]
    assert _files(corpus_config, "E-214", "bm25", top_k=1) == ["errors.csv"]


def test_dense_search_finds_the_paraphrase_that_keywords_miss(corpus_config: Path) -> None:
    assert _files(corpus_config, PARAPHRASE_QUERY, "vector", top_k=1) == ["sensors/anemometer.md"]
    assert "sensors/anemometer.md" not in _files(corpus_config, PARAPHRASE_QUERY, "bm25", top_k=7)
    assert _files(corpus_config, PARAPHRASE_QUERY, "hybrid", top_k=1) == ["sensors/anemometer.md"]


def test_hybrid_fuses_both_rankings(corpus_config: Path) -> None:
    hybrid = _files(corpus_config, BOTH_QUERY, "hybrid", top_k=2)
    assert set(hybrid) == {"parts/fan.md", "sensors/anemometer.md"}
    assert set(_files(corpus_config, BOTH_QUERY, "vector", top_k=2)) != set(hybrid)
    assert "sensors/anemometer.md" not in _files(corpus_config, BOTH_QUERY, "bm25", top_k=2)
    source = Indexer.from_config(corpus_config).retrieve(BOTH_QUERY, top_k=1)[0]
    assert set(source.scores) == {"vector", "bm25"}  # found by both, and says with which scores
    assert source.to_dict()["scores"].keys() == {"vector", "bm25"}

    # Weights move the fusion: with the keyword side off, hybrid ranks as the dense side does,
    # and with the dense side off, as BM25 does (both fusion functions).
    vector = _files(corpus_config, BOTH_QUERY, "vector", top_k=3)
    bm25 = _files(corpus_config, BOTH_QUERY, "bm25", top_k=3)
    for off_bm25, off_dense in (
        (
            {"retrieval.fusion": "rrf", "retrieval.bm25_weight": 0},
            {"retrieval.fusion": "rrf", "retrieval.vector_weight": 0},
        ),
        ({"retrieval.alpha": 1.0}, {"retrieval.alpha": 0.0}),
    ):
        assert _files(corpus_config, BOTH_QUERY, "hybrid", top_k=3, **off_bm25) == vector
        # (BM25 matches fewer passages than asked for: hybrid fills the rest from the dense side.)
        assert _files(corpus_config, BOTH_QUERY, "hybrid", top_k=3, **off_dense)[: len(bm25)] == bm25


def test_tokenizer_keeps_identifiers_whole_and_in_parts() -> None:
    terms = tokenize("Error E-214 on part AUR-7731-X (firmware v2.3.1, SKU 00417-B).")
    assert {"e-214", "aur-7731-x", "v2.3.1", "00417-b", "7731", "214"} <= set(terms)


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_top_k_is_honoured_exactly(corpus_config: Path, mode: str) -> None:
    for k in (1, 2, 5, len(CORPUS)):
        assert len(_files(corpus_config, "part number of the station", mode, top_k=k)) == k


def test_keyword_top_k_is_exact_up_to_the_passages_that_match(corpus_config: Path) -> None:
    assert len(_files(corpus_config, "AUR part numbers", "bm25", top_k=3)) == 3
    assert _files(corpus_config, "the", "bm25", top_k=5) == []  # a stop word matches nothing


def test_filters_by_path_glob_type_and_metadata_key(corpus_config: Path) -> None:
    ix = Indexer.from_config(corpus_config)
    in_sensors = ix.retrieve(IDENTIFIER_QUERY, top_k=5, filters={"path": "sensors/*"})
    assert {s.file for s in in_sensors} == {"sensors/anemometer.md", "sensors/rain.md"}
    assert {s.file for s in ix.retrieve("battery", top_k=5, filters={"type": "txt"})} == {"power/battery.txt"}
    by_name = ix.retrieve("part", top_k=5, filters=parse_filter_options(["file_name=codes.md"]))
    assert [s.file for s in by_name] == ["parts/codes.md"]
    # Values from the command line are strings; numbers in metadata still match.
    first_chunks = ix.retrieve("part", top_k=10, filters={"chunk": "0"})
    assert len(first_chunks) == len(CORPUS) and all(s.metadata["chunk"] == 0 for s in first_chunks)
    assert ix.retrieve("part", filters={"path": "nowhere/*"}) == []
    with pytest.raises(ConfigError, match="key=value"):
        parse_filter_options(["path"])


def test_filters_from_config_apply_to_every_query(corpus_config: Path) -> None:
    for mode in ("vector", "bm25", "hybrid"):
        ix = Indexer.from_config(
            corpus_config, {"retrieval.filters": {"path": "parts/*"}, "retrieval.mode": mode}
        )
        assert {s.file for s in ix.retrieve(BOTH_QUERY, top_k=5)} <= {
            "parts/fan.md",
            "parts/codes.md",
            "parts/inventory.md",
        }


def test_similarity_cutoff_drops_weak_dense_hits(corpus_config: Path) -> None:
    open_ = Indexer.from_config(corpus_config, {"retrieval.mode": "vector"}).retrieve(
        PARAPHRASE_QUERY, top_k=7
    )
    cutoff = (open_[0].score + open_[1].score) / 2
    cut = Indexer.from_config(
        corpus_config, {"retrieval.mode": "vector", "retrieval.similarity_cutoff": cutoff}
    ).retrieve(PARAPHRASE_QUERY, top_k=7)
    assert [s.chunk_id for s in cut] == [open_[0].chunk_id]


def test_duplicates_do_not_crowd_out_other_documents(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path / "docs")
    for copy in ("copy-a", "copy-b"):  # the same fan page three times
        (docs / copy).mkdir()
        shutil.copy(docs / "parts/fan.md", docs / copy / "fan.md")
    config = write_config(tmp_path, docs, llm={"provider": "none"})
    Indexer.from_config(config).build()
    for mode in ("vector", "bm25", "hybrid"):
        deduped = Indexer.from_config(config, {"retrieval.mode": mode}).retrieve("fan part number", top_k=3)
        texts = [s.text for s in deduped]
        assert len(texts) == 3 and len(set(texts)) == 3, mode
        raw = Indexer.from_config(config, {"retrieval.mode": mode, "retrieval.dedupe": False})
        assert len({s.text for s in raw.retrieve("fan part number", top_k=3)}) == 1, mode


def test_max_per_document(corpus_config: Path) -> None:
    ix = Indexer.from_config(corpus_config, {"retrieval.max_per_document": 1})
    files = [s.file for s in ix.retrieve("part", top_k=7)]
    assert len(files) == len(set(files)) == 7


@pytest.mark.slow
def test_keyword_index_follows_incremental_builds_and_survives_restarts(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path / "docs")
    config = write_config(tmp_path, docs, llm={"provider": "none"})
    Indexer.from_config(config).build()
    path = keyword_file(tmp_path / "storage", "test")
    assert len(KeywordIndex(path)) == len(CORPUS)

    (docs / "parts/heater.md").write_text("Heater element, part number HTR-0042-Z, 12 V.")
    Indexer.from_config(config).build()
    (docs / "parts/fan.md").unlink()
    Indexer.from_config(config).build()
    # A fresh process reads the persisted index: the new part is there, the deleted one is gone.
    script = (
        "import json, sys\nfrom indexer import Indexer\n"
        "ix = Indexer.from_config(sys.argv[1], {'retrieval.mode': 'bm25'})\n"
        "print(json.dumps([[s.file for s in ix.retrieve(q)] for q in ('HTR-0042-Z', 'AUR-7731-X')]))\n"
    )
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", script, str(config)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path.cwd(),
    )
    heater, fan = json.loads(out.stdout)
    assert heater[0] == "parts/heater.md" and "parts/fan.md" not in fan
    assert "incomplete" not in out.stderr and "missing" not in out.stderr
    assert len(KeywordIndex(path)) == len(CORPUS)  # one chunk each: the deleted file's went


def test_a_build_updates_the_keyword_index_with_what_it_wrote_and_never_reads_the_store_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexer.index.store import ChunkStore

    docs = write_corpus(tmp_path / "docs")
    config = write_config(tmp_path, docs, llm={"provider": "none"})
    Indexer.from_config(config).build()
    (docs / "parts/heater.md").write_text("Heater element, part number HTR-0042-Z, 12 V.")
    reads: list[str] = []
    real_of = ChunkStore.chunks_of

    def recording_chunks_of(self: ChunkStore, ids):  # the real read, noted
        reads.append("some")
        return real_of(self, ids)

    monkeypatch.setattr(ChunkStore, "chunks_of", recording_chunks_of)
    summary = Indexer.from_config(config).build()
    monkeypatch.undo()
    assert summary.added == 1 and reads == []
    assert {"write", "keyword", "commit", "encode", "read_chunk"} <= summary.stages.keys()
    ix = Indexer.from_config(config, {"retrieval.mode": "bm25"})
    assert ix.retrieve("HTR-0042-Z")[0].file == "parts/heater.md"


def test_a_missing_keyword_index_is_never_silent_and_the_next_build_restores_it(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path / "docs")
    config = write_config(tmp_path, docs, llm={"provider": "none"})
    Indexer.from_config(config).build()
    path = keyword_file(tmp_path / "storage", "test")
    path.unlink()  # lost (deleted by hand, a restore without it)

    stale = Indexer.from_config(config, {"retrieval.mode": "bm25"}).stream("AUR-7731-X")
    assert stale.sources[0].file == "parts/fan.md"  # made in memory from the vector store
    assert stale.notice and "incomplete" in stale.notice and "indexer build" in stale.notice

    summary = Indexer.from_config(config).build()  # nothing changed on disk: the index catches up
    assert summary.chunks_embedded == 0 and len(KeywordIndex(path)) == len(CORPUS)
    fresh = Indexer.from_config(config, {"retrieval.mode": "bm25"}).stream("AUR-7731-X")
    assert fresh.sources[0].file == "parts/fan.md" and fresh.notice is None


def test_a_keyword_index_of_an_older_format_is_replaced(tmp_path: Path) -> None:
    config = write_config(tmp_path, write_corpus(tmp_path / "docs"), llm={"provider": "none"})
    Indexer.from_config(config).build()
    path = keyword_file(tmp_path / "storage", "test")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '2' WHERE key = 'format_version'")
    legacy = tmp_path / "storage" / "keyword-test"  # the bm25s folder of format 2
    legacy.mkdir()
    (legacy / "state.json").write_text("{}")

    reopened = KeywordIndex(path)
    assert len(reopened) == 0 and reopened.meta("complete") is None  # never searched as current
    reopened.close()
    Indexer.from_config(config).build()  # nothing changed on disk: the keyword index is refilled
    assert len(KeywordIndex(path)) == len(CORPUS) and not legacy.exists()


def test_bm25_scores_equal_a_from_scratch_lucene_bm25(tmp_path: Path) -> None:
    """The incremental index scores exactly as bm25s (method lucene, k1 0.9, b 0.4) built from
    scratch over the same chunks, after adds and deletes."""
    import bm25s

    from indexer.index.store import Hit

    words = ["wind", "rain", "solar", "mast", "wind", "battery", "rain", "fan", "heater", "wind"]
    texts = [
        f"{w} sensor reading {i} " * (1 + i % 4) + ("AUR-7731-X" if i % 5 == 0 else "")
        for i, w in enumerate(words)
    ]
    hits = [
        Hit(id=f"c{i}", text=t, metadata={"doc_id": f"d{i}", "file_hash": "h"}) for i, t in enumerate(texts)
    ]
    gone = Hit(id="gone", text="wind wind wind", metadata={"doc_id": "gone", "file_hash": "h"})
    index = KeywordIndex(None)
    index.add([*hits, gone])
    index.delete_documents(["gone"])
    reference = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    reference.index([tokenize(t) for t in texts], show_progress=False)
    for query in ("wind sensor", "rain reading 3", "AUR-7731-X heater"):
        got = {h.id: h.score for h in index.search(query, 10)}
        terms = query_terms(query, reference.vocab_dict)
        docs, scores = reference.retrieve([terms], k=len(texts), show_progress=False)
        want = {f"c{int(d)}": float(s) for d, s in zip(docs[0], scores[0], strict=True) if s > 0}
        assert got.keys() == want.keys(), query
        assert all(abs(got[k] - want[k]) < 1e-4 for k in want), query
    # bm25s is imported without SciPy (index/keyword.py): free only while its default backend is used.
    assert index._current().bm25.csc_backend == "numpy"


@pytest.mark.slow
def test_cli_filter_top_k_and_mode(corpus_config: Path) -> None:
    result = cli(
        "query", str(corpus_config), "part number", "--retrieve-only", "--json",
        "--filter", "path=parts/*", "--filter", "type=md", "--top-k", "2", "--mode", "bm25",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    sources = json.loads(result.stdout)["sources"]
    assert len(sources) == 2 and all(s["file"].startswith("parts/") for s in sources)
    bad = cli("query", str(corpus_config), "x", "--filter", "nonsense", "--retrieve-only")
    assert bad.returncode == 2 and "key=value" in bad.stderr and "Traceback" not in bad.stderr
