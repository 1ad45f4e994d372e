"""``query.postprocessors``: LlamaIndex node postprocessors (any ``BaseNodePostprocessor``, e.g. a
reranker, or the user's own) over indexer's ranked passages.

They run after fusion (and ``retrieval.rerank``), before the passages are fitted to the prompt, in
every way in (CLI, Python API, HTTP, MCP: all retrieve through ``Retriever``). Each passage goes to
them as a ``NodeWithScore`` whose node has the chunk's id, text and metadata and whose score is the
one indexer ranks by, and comes back as a passage with what they left: their order, their text
(``MetadataReplacementPostProcessor`` replaces it), their metadata, and their score where they
changed it (also kept as the passage's ``postprocess`` score).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from indexer.config.plugins import PostprocessorSpec, scrub
from indexer.errors import IndexerError
from indexer.index.store import Hit
from indexer.query.fusion import Ranked

if TYPE_CHECKING:
    from llama_index.core.schema import NodeWithScore

POSTPROCESS_SCORE = "postprocess"


def to_nodes(passages: Sequence[Ranked]) -> list[NodeWithScore]:
    """Ranked passages as LlamaIndex nodes with their scores."""
    from llama_index.core.schema import NodeWithScore, TextNode

    return [
        NodeWithScore(
            node=TextNode(id_=r.hit.id, text=r.hit.text, metadata=dict(r.hit.metadata)), score=r.score
        )
        for r in passages
    ]


def from_nodes(nodes: Sequence[NodeWithScore], passages: Sequence[Ranked]) -> list[Ranked]:
    """``nodes`` (what postprocessors returned) as ranked passages, in their order, keeping each
    passage's own scores; a node they made up is a passage of its own."""
    from llama_index.core.schema import MetadataMode

    by_id = {r.hit.id: r for r in passages}
    out: list[Ranked] = []
    for item in nodes:
        node = item.node
        text = node.get_content(metadata_mode=MetadataMode.NONE)
        metadata = dict(node.metadata)
        before = by_id.get(node.node_id)
        if before is None:
            score = float(item.score) if item.score is not None else 0.0
            out.append(Ranked(Hit(node.node_id, text, metadata, score), score, {POSTPROCESS_SCORE: score}))
            continue
        scores = dict(before.scores)
        score = before.score
        if item.score is not None and float(item.score) != before.score:
            score = scores[POSTPROCESS_SCORE] = float(item.score)
        out.append(Ranked(Hit(before.hit.id, text, metadata, before.hit.score), score, scores))
    return out


class Postprocessors:
    """The configured postprocessors, made on first use (one set per engine, shared by its
    threads: LlamaIndex's postprocessors keep no per-query state)."""

    def __init__(self, specs: Sequence[PostprocessorSpec], where: str) -> None:
        self.specs = list(specs)
        self.where = where
        self._made: list[Any] | None = None
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.specs)

    def _instances(self) -> list[Any]:
        with self._lock:
            if self._made is None:
                self._made = [
                    spec.build(f"query.postprocessors.{n}", self.where) for n, spec in enumerate(self.specs)
                ]
            return self._made

    def apply(self, question: str, passages: list[Ranked]) -> list[Ranked]:
        """``passages`` after every postprocessor, in order."""
        nodes = to_nodes(passages)
        for n, processor in enumerate(self._instances()):
            try:
                nodes = processor.postprocess_nodes(nodes, query_str=question)
            except IndexerError:
                raise
            except Exception as exc:
                spec = self.specs[n]
                lines = str(exc).strip().splitlines()
                reason = scrub(lines[0] if lines else "", spec.kwargs)
                raise IndexerError(
                    f"query.postprocessors.{n} ({spec.class_}, in {self.where}) failed: "
                    f"{type(exc).__name__}: {reason}"
                ) from None
        return from_nodes(nodes, passages)
