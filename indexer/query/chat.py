"""A multi-turn conversation over the index: follow-ups are condensed with the history into a
standalone question before retrieval, so "and how often?" finds what "it" was about."""

from __future__ import annotations

from collections.abc import Mapping

from indexer.query.engine import AnswerStream, QueryEngine, Source
from indexer.query.filters import FilterValue

# Turns kept for condensing; older ones add little and cost prompt tokens.
MAX_TURNS = 6


class ChatSession:
    def __init__(
        self,
        engine: QueryEngine,
        *,
        top_k: int | None = None,
        filters: Mapping[str, FilterValue] | None = None,
    ) -> None:
        self.engine = engine
        self.top_k = top_k
        self.filters = dict(filters or {})
        self.history: list[tuple[str, str]] = []
        self.sources: list[Source] = []

    def check(self) -> None:
        """Raise the ``IndexerError`` that every question would meet: no index yet, filters on
        keys no chunk has, a model that is configured but cannot be loaded. A session checks once,
        before its first question, instead of failing each turn."""
        from indexer.query.filters import Filters

        self.engine.manifest()
        Filters.from_mapping(self.engine.config.retrieval.filters, self.filters)
        _ = self.engine.components.llm

    def ask(self, question: str) -> AnswerStream:
        """Stream the answer to ``question`` in the context of the conversation; call
        ``remember`` with the consumed stream to add the turn to the history."""
        stream = self.engine.stream(
            question, self.top_k, filters=self.filters, history=self.history[-2 * MAX_TURNS :]
        )
        self.sources = stream.sources
        return stream

    def remember(self, question: str, stream: AnswerStream) -> None:
        self.history.append(("user", question))
        if stream.answer:
            self.history.append(("assistant", stream.answer))

    def reset(self) -> None:
        self.history.clear()
        self.sources = []
