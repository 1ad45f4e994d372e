"""Chunk sizes are counted in the embedding model's tokens, tokenizing each text once: a piece of a
text the splitter already measured is counted from the whole text's tokens (``PieceCounter``), and
must count as it would alone."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from indexer.components.embedding import resolve_model_location
from indexer.config.models import ChunkingConfig
from indexer.ingestion.chunking import PieceCounter, make_splitter, token_count
from tests.conftest import SHARED_DATA

PAUL_GRAHAM = SHARED_DATA / "paul_graham_essay" / "paul_graham_essay.txt"
TOKENIZER_JSON = Path(resolve_model_location("default")) / "tokenizer.json"  # the bundled embedder's
# The splitter's documented slack (ingestion/chunking.py): about one token per seam of a chunk.
SLACK = 4


@pytest.fixture(scope="module")
def spans():
    tokenizer = Tokenizer.from_file(str(TOKENIZER_JSON))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return lambda text: tokenizer.encode(text, add_special_tokens=False).offsets


def pieces_at_whitespace(text: str, rng: random.Random) -> list[str]:
    """``text`` cut into consecutive pieces, each cut just after a space or a newline."""
    cuts = sorted(rng.sample([i + 1 for i, c in enumerate(text) if c in " \n"], k=40))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


TEXTS = [
    "Plain prose. It has sentences, clauses; and words of all lengths, e.g. AUR-7731-X.\n" * 40,
    "Über naïve café résumés — “quoted” text, emoji 🎉🎉, and CJK 数据索引检索 mixed in. " * 30,
    "word " * 200 + "x" * 70 + " tail " + " " * 50 + "the end " * 30,  # long [UNK] and whitespace runs
]


@pytest.mark.parametrize("text", TEXTS, ids=["prose", "unicode", "long-runs"])
def test_a_piece_counts_as_it_would_alone(spans, text: str) -> None:
    counter = PieceCounter(spans, limit=10**9)
    assert counter(text) == token_count(spans, text)
    for piece in pieces_at_whitespace(text, random.Random(len(text))):
        assert counter(piece) == token_count(spans, piece), repr(piece)


def test_a_text_longer_than_kept_is_counted_by_windows_and_its_pieces_are_kept(spans) -> None:
    paragraph = "A sentence of several words, counted once. " * 40
    text = "\n\n".join([paragraph] * (PieceCounter.KEEP_CHARS // len(paragraph) + 2))
    counter = PieceCounter(spans, limit=10**9)
    assert counter(text) == token_count(spans, text)
    first = text.split("\n\n")[0]
    assert counter(first) == token_count(spans, first)
    clause = first[: first.index(" ", 50) + 1]
    assert counter(clause) == token_count(spans, clause)


@pytest.mark.shared_data(PAUL_GRAHAM)
@pytest.mark.parametrize("chunk_size", [32, 256])
def test_chunks_stay_within_the_size_on_a_real_essay(spans, chunk_size: int) -> None:
    text = PAUL_GRAHAM.read_text(encoding="utf-8")
    splitter = make_splitter(ChunkingConfig(chunk_size=chunk_size, chunk_overlap=chunk_size // 8), spans)
    chunks = splitter.split_text(text)
    assert len(chunks) >= len(text) // (chunk_size * 16)
    assert max(token_count(spans, chunk) for chunk in chunks) <= chunk_size + SLACK
    # Every word of the essay is in some chunk, in order.
    assert " ".join(chunks).split()[:50] == text.split()[:50]


def punkt_loaded() -> bool:
    from llama_index.core.utils import globals_helper

    return globals_helper._punkt_tokenizer is not None


def test_chunking_workers_start_with_the_sentence_splitter_loaded() -> None:
    """A worker forked from the fork server has NLTK's Punkt already: loading it at each worker's
    first file cost every worker of every build 1.5 s of CPU."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    from indexer.ingestion.build_processes import child_context
    from indexer.ingestion.local_engine import _init_worker

    with ProcessPoolExecutor(
        1,
        mp_context=child_context(),
        initializer=_init_worker,
        initargs=(ChunkingConfig().model_dump(), TOKENIZER_JSON.read_text(), False, None, os.getpid()),
    ) as pool:
        assert pool.submit(punkt_loaded).result(timeout=120)


@pytest.mark.slow
def test_the_chunking_workers_fork_server_loads_no_threaded_library() -> None:
    """The fork server forks every worker, which is safe only while it runs one thread: torch
    (threads once used) and the bm25s package (it imports and runs JAX where JAX is installed, and
    JAX's GPU plugin initialised CUDA on a GPU machine) must stay out of it. Only bm25s's stop word
    list is read there."""
    import subprocess
    import sys

    code = (
        "import sys, indexer.ingestion.local_engine, indexer.ingestion.worker_preload;"
        "print(sorted(m for m in ('torch', 'bm25s', 'jax') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
    from bm25s.stopwords import STOPWORDS_EN

    from indexer.index.keyword import _stopwords

    assert _stopwords() == frozenset(STOPWORDS_EN)
