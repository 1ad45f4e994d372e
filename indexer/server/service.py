"""The server's one point of contact with the query core (``indexer.api.Indexer``).

Everything the endpoints need from the engine goes through here, so a change in the engine's API
is adapted in one place.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from indexer.api import Indexer
from indexer.config.models import RetrievalMode
from indexer.server.queue import Generation
from indexer.ways_in import Refused


@dataclass
class AnswerRequest:
    question: str
    top_k: int | None = None
    filters: dict[str, Any] | None = None
    history: list[dict[str, str]] = field(default_factory=list)
    max_tokens: int | None = None
    mode: RetrievalMode | None = None


@dataclass
class AnswerEnd:
    """What the ``done`` event carries once the answer is complete."""

    answer: str | None
    notice: str | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    abstained: bool = False
    # Each sentence with its citations and support (``indexer.query.attribution.Sentence``).
    sentences: list[dict[str, Any]] = field(default_factory=list)


class RagService:
    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer
        self.config = indexer.config

    # -- identities -------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self.config.server.model_name or f"indexer-{self.config.vector_store.collection}"

    @property
    def embedding_model_id(self) -> str:
        return str(self.indexer.embedding_identity.name)

    @property
    def embedding_dimension(self) -> int:
        return int(self.indexer.embedding_identity.dimension or 0)

    @property
    def has_llm(self) -> bool:
        return self.indexer.has_llm

    # -- retrieval (runs concurrently, on worker threads) -------------------------------------

    def retrieve(
        self,
        question: str,
        top_k: int | None,
        filters: dict[str, Any] | None,
        mode: RetrievalMode | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The passages, and their notice: each request's own, though requests share the engine."""
        found = self.indexer.retrieve(question, top_k=top_k, filters=filters, mode=mode)
        return [s.to_dict() for s in found], found.notice

    # -- answers (on the generation thread, one at a time) ---------------------------------------

    def answer_job(self, request: AnswerRequest) -> Any:
        """A generation-queue job: emits ``sources``, then ``token``s, then ``done`` (AnswerEnd)."""
        timeout_s = self.config.server.generation_timeout_s
        # Only a generated answer that is flagged may show text before it is checked: "drop",
        # "refuse", "extract" and "auto" send the checked answer as one piece at the end.
        query = self.config.query
        live = query.unsupported == "flag" and query.answer_style == "generate"

        def job(generation: Generation) -> None:
            stream = self.indexer.stream(
                request.question,
                top_k=request.top_k,
                filters=request.filters,
                history=request.history,
                mode=request.mode,
                max_tokens=request.max_tokens,  # the model stops there, counted in its tokens
            )
            try:
                generation.emit("sources", [s.to_dict() for s in stream.sources])
                started = time.monotonic()
                timed_out = False
                for token in stream:
                    if generation.cancelled:
                        break
                    if live:
                        generation.emit("token", token)
                    if time.monotonic() - started > timeout_s:
                        timed_out = True
                        break
                stream.close()  # ends the generation, so its usage is complete
                usage = stream.usage
                checked = stream.checked()
                if not live and checked.answer:
                    generation.emit("token", checked.answer)
                generation.emit(
                    "done",
                    AnswerEnd(
                        answer=checked.answer,
                        notice="; ".join(n for n in (stream.notice, checked.notice) if n) or None,
                        sentences=[s.to_dict() for s in checked.sentences],
                        finish_reason="length" if timed_out else stream.finish_reason,
                        prompt_tokens=usage.prompt_tokens if usage is not None else 0,
                        completion_tokens=usage.completion_tokens if usage is not None else 0,
                        abstained=stream.abstained,
                    ),
                )
            finally:
                stream.close()  # stops llama.cpp at once when the loop above broke off

        return job

    # -- the documents behind the sources (routes/documents.py) -----------------------------------

    def original_path(self, doc_id: str) -> Path:
        """The file of an indexed document, where the build would list it now; 404 otherwise."""
        from indexer.ingestion.sources import served_path

        path = served_path(self.config.data, doc_id) if doc_id in self.indexer.indexed_files() else None
        if path is None:
            raise Refused(404, f"no indexed file {doc_id[:200]!r} in data.input_dir", param="doc_id")
        return path

    def page_image(self, doc_id: str, page: int, chunk_id: str | None, text: str | None, width: int) -> bytes:
        """A page of an indexed PDF as a PNG, the passage (a chunk of that file, or text) highlighted."""
        from indexer.server.documents import PageError, page_png

        if not doc_id.lower().endswith(".pdf"):
            raise Refused(400, f"{doc_id[:200]!r} is not a PDF: only PDF pages are images", param="doc_id")
        path = self.original_path(doc_id)
        passage = text or ""
        if chunk_id:
            found = next((h.text for h in self.indexer.file_passages(doc_id) or [] if h.id == chunk_id), None)
            if found is None:
                raise Refused(404, f"no passage {chunk_id[:200]!r} in {doc_id[:200]!r}", param="chunk_id")
            passage = found
        try:
            return page_png(path, page, passage, width)
        except PageError as exc:
            raise Refused(exc.status, f"{doc_id[:200]!r}: {exc.message}", param="page") from None

    # -- embeddings and index description --------------------------------------------------------

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        return self.indexer.embed(texts)

    def index_info(self, reveal_paths: bool = True) -> dict[str, Any]:
        """The manifest and counts; without ``reveal_paths``, every absolute path is cut to its
        last part (folder or file name), so the machine's layout stays private."""
        info = {"model": self.model_id, **self.indexer.info(reveal_paths=reveal_paths)}
        return info if reveal_paths else _without_absolute_paths(info)


_ABSOLUTE_RE = re.compile(r"^(/|~/|[A-Za-z]:[\\/]|\\\\)")


def _without_absolute_paths(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_absolute_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_absolute_paths(v) for v in value]
    if isinstance(value, str) and _ABSOLUTE_RE.match(value):
        return PurePosixPath(value.replace("\\", "/")).name
    return value
