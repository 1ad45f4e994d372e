"""A cold CLI call does only the imports its work needs: a retrieve-only question is embedded by
onnxruntime and tokenizers, never torch or sentence-transformers (5 to 10 s of imports on a small
CPU). Times are measured by benchmarks/cold_start.py, not here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.adversarial.helpers import cli, small_config, write_docs
from tests.conftest import ROOT, run_cli

HEAVY = ("torch", "sentence_transformers", "transformers", "llama_index.embeddings.huggingface")

# The console script's own code path, in a fresh interpreter, reporting what it imported.
_RUN_CLI = """
import json, sys
heavy = json.loads(sys.argv[2])
sys.argv = ["indexer", *json.loads(sys.argv[1])]
from indexer.cli import main
try:
    main()
except SystemExit:
    pass
print("MODULES=" + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in heavy)))
"""


def _cli_in_subprocess(
    *args: str, watch: tuple[str, ...] = HEAVY, first: str = ""
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``first``: code the interpreter runs before the CLI."""
    argv = [sys.executable, "-c", first + _RUN_CLI, json.dumps(args), json.dumps(watch)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env={**os.environ}, timeout=300)
    marker = [line for line in done.stdout.splitlines() if line.startswith("MODULES=")]
    assert marker, (done.stdout, done.stderr)
    return done, json.loads(marker[-1].removeprefix("MODULES="))


def _ranked(answer: dict[str, Any]) -> list[tuple[int, str, str, float]]:
    return [(s["rank"], s["file"], s["text"], round(s["score"], 5)) for s in answer["sources"]]


@pytest.mark.slow
def test_retrieve_only_query_imports_neither_torch_nor_sentence_transformers(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs)
    assert cli("build", str(config)).returncode == 0

    argv = ("query", str(config), "How often is the desiccant replaced?", "--retrieve-only", "--json")
    done, loaded = _cli_in_subprocess(*argv, watch=(*HEAVY, "onnxruntime", "chromadb", "scipy", "bm25s"))

    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[0])
    assert answer["sources"][0]["file"] == "mast.txt"
    # No torch, and the question was embedded in a child of its own while this process opened
    # Chroma (query/prefetch.py): onnxruntime never loaded here either. The passages and their
    # scores are those of a process that embedded the question itself.
    # bm25s searched without SciPy, which it imports only for a backend the index never uses.
    imported = {m.split(".")[0] for m in loaded}
    assert imported == {"chromadb", "bm25s"}, f"the retrieve-only path imported {loaded}"
    itself = cli(*argv)
    assert itself.returncode == 0, itself.stderr
    assert _ranked(answer) == _ranked(json.loads(itself.stdout))
    doctor = cli("doctor", str(config), "--json")
    route = doctor.json()["sections"]["Embedding"]["embedding route"]
    assert "questions: onnxruntime + tokenizers, torch not imported" in route, route


def test_doctor_states_the_prompt_eval_time_of_the_config(tmp_path: Path, smollm2_gguf: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs, llm={"provider": "llama_cpp"}, query={"top_k": 2})

    doctor = cli("doctor", str(config), "--set", f"llm.model_path={smollm2_gguf}", "--json")

    report = doctor.json()
    row = report["sections"]["Model"]["prompt eval (est.)"]
    assert f"the {report['prompt_tokens']}-token prompt of query.top_k 2 chunks" in row, row
    assert float(row.split(" s ")[0]) > 0


def test_a_small_build_embeds_on_the_onnx_route_with_the_vectors_of_torch(tmp_path: Path) -> None:
    import numpy as np

    from indexer import Indexer
    from indexer.components.embedding import SentenceTransformerEmbedder
    from indexer.index.store import DOC_ID

    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs)
    # Both builds in new processes, as a user's shell starts them (and before this process opens
    # the index: Chroma's client does not see another process's writes made after it opened).
    first = run_cli("build", str(config), "--json")
    assert first.returncode == 0, first.stderr
    # A build that loads torch leaves the model's ONNX recipe (onnx_direct.py) for the calls after it.
    (docs / "radio.md").write_text(
        "# Radio\n\nThe mast radio now transmits on 915 MHz in the Americas, with hopping.\n",
        encoding="utf-8",
    )

    edited = run_cli("build", str(config), "--json")

    assert edited.returncode == 0, edited.stderr
    summary = json.loads(edited.stdout)
    assert summary["updated"] == 1 and summary["chunks_embedded"] >= 1
    assert summary["dtype"]["route"] == "onnx", summary["dtype"]
    ix = Indexer.from_config(config)
    store = ix.index.chunk_store(create=False)
    assert store is not None
    got = store._collection.get(where={DOC_ID: "radio.md"}, include=["embeddings", "documents"])
    stored = np.asarray(got["embeddings"], dtype=np.float32)
    embedder = ix.components.embedder
    assert isinstance(embedder, SentenceTransformerEmbedder)
    by_torch = embedder.encode(list(got["documents"]))
    cosine = (stored * by_torch).sum(axis=1) / (
        np.linalg.norm(stored, axis=1) * np.linalg.norm(by_torch, axis=1)
    )
    assert "OnnxTransformer" not in type(embedder.sentence_transformer[0].model).__name__
    assert cosine.min() > 0.999, cosine
    assert ix.retrieve("Which frequency does the radio use in the Americas?", top_k=1)[0].file == "radio.md"

    # In a process that holds sentence-transformers already (this one: its first build loaded
    # it), the imports the route saves are paid, and torch embeds the small build.
    (docs / "radio.md").write_text("# Radio\n\nThe mast radio transmits on 868 MHz.\n", encoding="utf-8")
    warm = cli("build", str(config), "--json")
    assert warm.returncode == 0, warm.stderr
    assert warm.json()["updated"] == 1 and warm.json()["dtype"].get("route") != "onnx", warm.json()["dtype"]


_SPLIT_THEN_REPORT = """
import json, sys
from indexer.config.models import ChunkingConfig
from indexer.ingestion.chunking import make_splitter

def spans(text):
    import re
    return [m.span() for m in re.finditer(r"\\S+", text)]

splitter = make_splitter(ChunkingConfig(chunk_size=16, chunk_overlap=0), spans)
chunks = splitter.split_text("Dr. Smith replaced the pack. It was wet! Was it the seal? " * 4)
loaded = sorted(m for m in ("nltk", "sklearn", "scipy") if m in sys.modules)
import scipy.stats  # whoever wants them later imports them as usual
print(json.dumps({"chunks": chunks, "loaded": loaded}))
"""


@pytest.mark.slow
def test_chunking_imports_nltk_without_scipy_or_scikit_learn() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SPLIT_THEN_REPORT], capture_output=True, text=True, cwd=ROOT, timeout=300
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["loaded"] == ["nltk"]  # the optional toolkit (1.3 s of CPU) stayed out
    assert len(report["chunks"]) > 1 and all(c.strip() for c in report["chunks"])


def test_a_hidden_package_is_hidden_only_from_the_importing_thread() -> None:
    import threading

    from indexer import import_without

    finder = import_without._HideFromThread({"scipy"})
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(finder.find_spec("scipy.stats", None)))
    thread.start()
    thread.join()

    assert other == [None]  # another thread's import goes on to the real finders
    with pytest.raises(ModuleNotFoundError):
        finder.find_spec("scipy.stats", None)
    assert finder.find_spec("numpy", None) is None


@pytest.mark.slow
def test_a_cold_answer_is_retrieved_in_a_child_while_the_model_loads(tmp_path: Path, tiny_gguf: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs, llm={"model_path": str(tiny_gguf), "max_new_tokens": 4})
    assert cli("build", str(config)).returncode == 0
    question = "How often is the desiccant replaced?"

    watch = ("chromadb", "llama_cpp", "llama_index")
    done, loaded = _cli_in_subprocess("query", str(config), question, "--json", watch=watch)

    assert done.returncode == 0, done.stderr
    answered = json.loads(done.stdout.splitlines()[0])
    # The search ran in the forked child (query/prefetch.py): this process never opened Chroma.
    # The model is indexer's own class over llama_cpp, and the prompt is made of chat_model.Message:
    # llama_index.core (about 1 s of imports) stays out of the way to the first token.
    assert {m.split(".")[0] for m in loaded} == {"llama_cpp"}, loaded
    streamed, loaded = _cli_in_subprocess("query", str(config), question, watch=watch)
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.strip() and {m.split(".")[0] for m in loaded} == {"llama_cpp"}, loaded
    retrieved = run_cli("query", str(config), question, "--retrieve-only", "--json")
    assert retrieved.returncode == 0, retrieved.stderr
    sources = json.loads(retrieved.stdout)["sources"]
    assert [(s["rank"], s["file"], s["text"]) for s in answered["sources"]] == [
        (s["rank"], s["file"], s["text"]) for s in sources
    ]


@pytest.mark.slow
def test_a_cold_answer_whose_retrieval_fails_reports_it_once(tmp_path: Path, tiny_gguf: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    config = small_config(tmp_path / "cfg", docs, llm={"model_path": str(tiny_gguf), "max_new_tokens": 4})
    assert cli("build", str(config)).returncode == 0

    done = run_cli("query", str(config), "Which frequency?", "--filter", "typ=pdf")

    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("error:") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "typ" in done.stderr and done.stdout == ""


@pytest.mark.slow
def test_a_cold_build_of_edited_files_chunks_them_in_a_child_while_the_index_opens(tmp_path: Path) -> None:
    import numpy as np

    configs = []
    for name in ("forked", "alone"):
        docs = write_docs(tmp_path / name / "docs")
        config = small_config(tmp_path / name / "cfg", docs)
        assert cli("build", str(config)).returncode == 0  # also leaves the model's ONNX recipe
        (docs / "radio.md").write_text(
            "# Radio\n\nThe mast radio now transmits on 915 MHz in the Americas. " * 30, encoding="utf-8"
        )
        (docs / "mast.txt").write_text(
            "The desiccant pack is replaced every three months.\n", encoding="utf-8"
        )
        configs.append(config)
    watch = ("llama_index", "chromadb", "nltk")

    forked, loaded = _cli_in_subprocess("build", str(configs[0]), "--json", watch=watch)
    # With Chroma loaded first, nothing is forked (forked.can_fork): the build chunks the files itself.
    alone, loaded_alone = _cli_in_subprocess(
        "build", str(configs[1]), "--json", watch=watch, first="import chromadb\n"
    )

    for done in (forked, alone):
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.split("MODULES=")[0])
        assert summary["updated"] == 2 and summary["dtype"]["route"] == "onnx", summary
    # ingestion/chunk_ahead.py: the files were read and chunked, and their Chroma records made, in
    # a child forked before the index was opened; this process never imported LlamaIndex or NLTK
    # (nor started the chunking workers, whose fork server imports them).
    assert {m.split(".")[0] for m in loaded} == {"chromadb"}, loaded
    assert "llama_index" in {m.split(".")[0] for m in loaded_alone}, loaded_alone
    # The records are those the build makes alone: ids, texts, LlamaIndex node metadata, vectors.
    for doc_id in ("radio.md", "mast.txt"):
        forked_records, alone_records = (_records(config, doc_id) for config in configs)
        assert forked_records["ids"]
        for key in ("ids", "documents", "metadatas"):
            assert forked_records[key] == alone_records[key], key
        assert np.allclose(forked_records["embeddings"], alone_records["embeddings"], atol=1e-6)


# One process per index read: chromadb's embedded client mixes up two persisted folders opened
# in one process ("Error finding id").
_RECORDS = """
import json, sys
from indexer import Indexer
from indexer.index.store import DOC_ID
store = Indexer.from_config(sys.argv[1]).index.chunk_store(create=False)
got = store._collection.get(where={DOC_ID: sys.argv[2]}, include=["documents", "metadatas", "embeddings"])
print(json.dumps({**got, "embeddings": [list(map(float, v)) for v in got["embeddings"]]}, default=str))
"""


def _records(config: Path, doc_id: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _RECORDS, str(config), doc_id], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_a_child_s_chunks_are_taken_only_for_the_same_files_and_tokenizer(tmp_path: Path) -> None:
    from indexer.forked import ForkedCall
    from indexer.ingestion.chunk_ahead import ChunkedAhead, _digest
    from indexer.ingestion.prepare import Prepared, WorkItem

    item = WorkItem("a.md", str(tmp_path / "a.md"), "hash-a", 10)
    other = WorkItem("b.md", str(tmp_path / "b.md"), "hash-b", 10)

    def ahead() -> ChunkedAhead:
        return ChunkedAhead([item], ForkedCall(lambda: (_digest("tokenizer"), [Prepared(item)])))

    assert ahead().take([other], "tokenizer") is None  # the plan under the writer's lock differs
    assert ahead().take([item], "another tokenizer") is None
    assert ahead().take([item], None) is None
    taken = ahead().take([item], "tokenizer")
    assert taken is not None and [p.item for p in taken] == [item]
    failing = ChunkedAhead([item], ForkedCall(lambda: 1 / 0))
    assert failing.take([item], "tokenizer") is None  # the build then chunks the file itself


def test_only_an_indexer_command_s_process_forks() -> None:
    probe = (
        "from indexer import forked\n"
        "library = forked.can_fork()\n"
        "forked.allow_forks()  # what the console script's entry point does\n"
        "print(library, forked.can_fork())\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]  # a program using the Python API is never forked
