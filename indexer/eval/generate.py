"""Draft an evaluation set from the config's own documents: one question/answer pair per sampled
chunk, written by the configured LLM in grammar-constrained JSON, so every reply parses.

The drafts are a starting point: read them, and drop the ones a person would not ask.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from indexer.components import Components
from indexer.config.models import Config
from indexer.errors import DataError, ModelError
from indexer.eval.structured import StructuredOutputError, ask_json
from indexer.progress import progress_bar

QA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 1, "maxLength": 300},
        "answer": {"type": "string", "minLength": 1, "maxLength": 200},
    },
    "required": ["question", "answer"],
}
GENERATE_MAX_TOKENS = 600

_SYSTEM = (
    "You write evaluation questions for a search system over a user's documents. Given one "
    "passage, write one question a user could ask that this passage answers, and its short answer "
    "(a phrase taken from the passage). Reply only with a JSON object."
)


@dataclass
class GenerationSummary:
    written: int = 0
    failed: int = 0
    sampled: int = 0
    chunks: int = 0
    failures: list[str] = field(default_factory=list)
    out: str = ""

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def generate_questions(
    config: Config,
    components: Components,
    *,
    n: int,
    out: Path,
    seed: int = 0,
    min_tokens: int = 32,
    show_progress: bool = False,
) -> GenerationSummary:
    """Sample ``n`` chunks (seeded, so drafts are repeatable) of at least ``min_tokens`` tokens and
    write a question per chunk to ``out`` as JSONL (``id``, ``question``, ``answers``,
    ``relevant_files``, ``source``)."""
    llm = components.llm
    if llm is None:
        raise ModelError(
            f"generating questions needs an LLM: {components.llm_notice or 'llm.provider is none'}"
        )
    chunks = _corpus_chunks(config, components, min_tokens)
    if not chunks:
        raise DataError(f"no chunk of {config.data.input_dir} has {min_tokens} tokens or more to ask about")
    rng = random.Random(seed)
    sample = rng.sample(chunks, min(n, len(chunks)))
    summary = GenerationSummary(sampled=len(sample), chunks=len(chunks), out=str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with (
        tmp.open("w", encoding="utf-8") as fh,
        progress_bar("Drafting questions", total=len(sample), enabled=show_progress) as bar,
    ):
        for chunk in sample:
            messages = [
                ChatMessage(role=MessageRole.SYSTEM, content=_SYSTEM),
                ChatMessage(
                    role=MessageRole.USER, content=f"Passage from {chunk['doc_id']}:\n{chunk['text']}"
                ),
            ]
            try:
                data = ask_json(llm, messages, QA_SCHEMA, max_tokens=GENERATE_MAX_TOKENS)
            except StructuredOutputError as exc:
                summary.failed += 1
                summary.failures.append(f"{chunk['id']}: {exc}")
                bar.advance()
                continue
            summary.written += 1
            item = {
                "id": f"gen-{summary.written:04d}",
                "question": str(data["question"]).strip(),
                "answers": [str(data["answer"]).strip()],
                "relevant_files": [chunk["doc_id"]],
                "source": {
                    "chunk": chunk["id"],
                    "start_char": chunk["start_char"],
                    "end_char": chunk["end_char"],
                },
            }
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
            bar.advance()
    tmp.replace(out)  # a stopped run leaves the previous file whole
    return summary


def _corpus_chunks(config: Config, components: Components, min_tokens: int) -> list[dict[str, Any]]:
    """The config's documents, read and chunked by the build's own step (``prepare.read_and_chunk``),
    without embedding them: the chunk ids are those a build of the same files gives."""
    from indexer.ingestion.chunking import make_splitter
    from indexer.ingestion.plan import settings_keys
    from indexer.ingestion.prepare import WorkItem, read_and_chunk
    from indexer.ingestion.readers import ReadLimits
    from indexer.ingestion.sources import discover

    embedder = components.embedder
    splitter = make_splitter(config.chunking, embedder.token_spans)
    limits, settings_key = ReadLimits.of(config.data), settings_keys(config)
    chunks = []
    for source in discover(config.data).sources:
        # The hash is read_and_chunk's to make, from the bytes it reads.
        key = settings_key(source.path.suffix)
        item = WorkItem(source.doc_id, str(source.path), "", source.size, key, limits)
        for chunk in read_and_chunk(item, splitter).chunks:  # an unreadable file has none
            if len(embedder.tokenize(chunk.text)) >= min_tokens:
                chunks.append(
                    {
                        "id": chunk.id,
                        "doc_id": source.doc_id,
                        "text": chunk.text,
                        "start_char": chunk.metadata.get("start_char"),
                        "end_char": chunk.metadata.get("end_char"),
                    }
                )
    return chunks
