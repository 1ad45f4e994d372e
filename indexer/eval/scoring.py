"""One question of one variant: retrieve, answer when asked to, and score both.

Retrieval is scored on documents: the engine's chunks map back to their document (its best chunk
score), deep enough to fill the deepest cut-off asked for (recall@100 retrieves 100 documents).
Questions with reference contexts instead of document judgements are scored on the contexts the
retrieved chunks evidence. Answers are generated through the same query engine a user queries,
timed by stage, and scored against the references (and by the judge when asked).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from indexer.components import Components
from indexer.errors import IndexerError
from indexer.eval import metrics as m
from indexer.eval.datasets import Question
from indexer.eval.metrics import rounded
from indexer.query.engine import QueryEngine, Source

# A retrieved chunk counts as a reference context's evidence when at least this share of the
# shorter text's word trigrams occur in the other: robust to chunk boundaries cutting a context.
CONTEXT_MATCH = 0.5


@dataclass
class QuestionScorer:
    """Scores questions for one variant on one index; ``score`` gives a question's record."""

    engine: QueryEngine
    components: Components
    llm: Any
    """The answering LLM, or ``None`` when answers are not generated."""
    judge: bool
    metrics: list[str]
    depth: int
    """Documents to retrieve: the deepest retrieval cut-off asked for, at least ``query.top_k``."""
    chunk_total: int

    @cached_property
    def retrieval_metrics(self) -> list[str]:
        return [x for x in self.metrics if m.parse_metric(x)[0] in m.RETRIEVAL_METRICS]

    def score(self, question: Question) -> dict[str, Any]:
        """The question's record: what was retrieved (and answered), its ``metrics`` and ``latency``."""
        record: dict[str, Any] = {"id": question.id, "question": question.question}
        scores: dict[str, float] = {}
        t0 = time.perf_counter()
        if question.contexts:
            sources = self.engine.retrieve(question.question, top_k=self.depth)
            ranked, qrels = _context_ranking(sources, question.contexts)
            record["retrieved"] = [
                {"id": s.chunk_id, "doc_id": s.doc_id, "score": rounded(s.score)} for s in sources
            ]
        else:
            doc_scores = self._retrieve_documents(question.question)
            ranked, qrels = m.rank_documents(doc_scores), question.qrels
            record["retrieved"] = [
                {"id": doc, "score": rounded(doc_scores[doc])} for doc in ranked[: self.depth]
            ]
        latency = {"retrieval_ms": _ms(t0)}
        if qrels:
            scores.update(m.retrieval_scores(ranked, qrels, self.retrieval_metrics))
            record["judged"] = len(qrels)
        if self.llm is not None:
            self._answer(question, record, scores, latency)
        record["metrics"] = {k: rounded(v) for k, v in scores.items()}
        record["latency"] = latency
        return record

    def _retrieve_documents(self, question: str) -> dict[str, float]:
        """Documents with their best chunk score, at least ``depth`` of them when the index has as
        many: documents of several chunks need more than ``depth`` chunks."""
        n = min(self.depth * 2, self.chunk_total)
        while True:
            sources = self.engine.retrieve(question, top_k=n)
            docs = m.max_score_per_document([(s.doc_id, s.score) for s in sources])
            if len(docs) >= self.depth or len(sources) < n or n >= self.chunk_total:
                return docs
            n = min(n * 2, self.chunk_total)

    def _answer(
        self,
        question: Question,
        record: dict[str, Any],
        scores: dict[str, float],
        latency: dict[str, float],
    ) -> None:
        from indexer.eval.judge import judge_faithfulness, judge_relevancy

        t0 = time.perf_counter()
        try:
            stream = self.engine.stream(question.question)
            t_gen = time.perf_counter()
            first: float | None = None
            for _ in stream:
                if first is None:
                    first = time.perf_counter()
        except IndexerError as exc:  # e.g. the passages do not fit llm.n_ctx: a fact about this variant
            record["answer_error"] = str(exc)
            return
        t_end = time.perf_counter()
        # The answer a user is shown: checked (attributed, query.unsupported and answer_style
        # applied), which for extract and auto is not the text the model streamed.
        result = stream.result()
        latency["check_ms"] = _ms(t_end)
        answer = result.answer or ""
        usage = stream.usage
        latency.update(
            answer_retrieval_ms=round((t_gen - t0) * 1000, 2),
            ttft_ms=round(((first or t_end) - t_gen) * 1000, 2),
            generation_ms=round((t_end - t_gen) * 1000, 2),
        )
        sentences = [s.to_dict() for s in result.sentences]
        record.update(
            answer=answer,
            references=question.answers,
            sources=[s.chunk_id for s in stream.sources],
            abstained=result.abstained,
            citations=result.citations,
            sentences=sentences,
            tokens={
                "prompt": usage.prompt_tokens if usage else None,
                "completion": usage.completion_tokens if usage else None,
            },
        )
        if result.notice:
            record["notice"] = result.notice
        metrics = self.metrics
        checks = m.check_scores(
            abstained=result.abstained,
            sentences=sentences,
            citations=result.citations,
            answer=answer,
            source_texts=[s.text for s in stream.sources],
            references=question.answers,
        )
        scores.update({name: value for name, value in checks.items() if name in metrics})
        if question.answers:
            said = m.answer_text(answer)
            if "exact_match" in metrics:
                scores["exact_match"] = m.exact_match(said, question.answers)
            if "f1" in metrics:
                scores["f1"] = m.token_f1(said, question.answers)
            if "semantic_similarity" in metrics:
                scores["semantic_similarity"] = _semantic_similarity(self.components, said, question.answers)
        if self.judge:
            verdicts = {}
            if "faithfulness" in metrics:
                verdicts["faithfulness"] = judge_faithfulness(
                    self.llm, answer, [s.text for s in stream.sources]
                )
            if "relevancy" in metrics:
                verdicts["relevancy"] = judge_relevancy(self.llm, question.question, answer)
            record["judge"] = {name: v.to_dict() for name, v in verdicts.items()}
            for name, verdict in verdicts.items():
                if verdict.score is not None:
                    scores[name] = verdict.score


def retrieval_depth(metrics: list[str], top_k: int) -> int:
    """How many documents to retrieve per question: the deepest retrieval cut-off asked for
    (recall@100 needs 100), and never fewer than the config's ``query.top_k``."""
    cutoffs = (k or 0 for name, k in map(m.parse_metric, metrics) if name in m.RETRIEVAL_METRICS)
    return max(max(cutoffs, default=0), top_k)


def _semantic_similarity(components: Components, answer: str, references: list[str]) -> float:
    if not answer.strip():
        return 0.0
    vectors = components.embedder.embed([answer, *references]).tolist()
    return max(m.cosine(vectors[0], ref) for ref in vectors[1:])


def _context_ranking(sources: list[Source], contexts: list[str]) -> tuple[list[str], dict[str, int]]:
    """Chunks -> ids of the reference contexts they evidence (each credited once, at its best
    rank); chunks that evidence none keep their own id and count as not relevant."""
    context_grams = [_trigrams(c) for c in contexts]
    credited: set[int] = set()
    ranked = []
    for source in sources:
        chunk_grams = _trigrams(source.text)
        match = next(
            (
                i
                for i, grams in enumerate(context_grams)
                if i not in credited and _overlaps(grams, chunk_grams)
            ),
            None,
        )
        if match is None:
            ranked.append(f"chunk:{source.chunk_id}")
        else:
            credited.add(match)
            ranked.append(f"context:{match + 1}")
    return ranked, {f"context:{i + 1}": 1 for i in range(len(contexts))}


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = m.normalize_answer(text).split()
    return {tuple(words[i : i + 3]) for i in range(max(len(words) - 2, 1))} if words else set()


def _overlaps(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> bool:
    if not a or not b:
        return False
    return len(a & b) / min(len(a), len(b)) >= CONTEXT_MATCH


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)
