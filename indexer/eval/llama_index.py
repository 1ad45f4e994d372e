"""LlamaIndex's evaluation over indexer: ``RetrieverEvaluator`` on ``Indexer.as_retriever()`` and
``BatchEvalRunner`` on ``Indexer.as_query_engine()``, scoring what ``indexer eval`` scores.

``indexer eval`` judges documents, not chunks: a dataset names relevant files (``relevant_files``,
BEIR qrels, ``expected_sources``), and the ranking scored is the documents' in order of their best
chunk (ties by document id, as trec_eval breaks them), retrieved deep enough to hold ``depth``
documents. LlamaIndex's ``HitRate`` and ``MRR`` compare node ids with ``expected_ids``; here the
ids are documents (a node's ``ref_doc_id``), so ``expected_ids`` are the dataset's file names and
the two give ``indexer eval``'s ``hit@k`` and ``mrr@k``:

>>> from llama_index.core.evaluation import HitRate, MRR
>>> evaluator = DocumentRetrieverEvaluator(
...     metrics=[HitRate(), MRR()], retriever=ix.as_retriever(), k=10)
>>> for question, files in dataset_questions("data/sample_questions.jsonl"):
...     evaluator.evaluate(question, expected_ids=files).metric_vals_dict

``indexer eval`` turns ``retrieval.dedupe`` off (a copy of a judged text under another id must
not hide it): build the ``Indexer`` with ``overrides={"retrieval.dedupe": False}`` for the same
numbers on a corpus with copies. Its default metrics include ``recall@100``, which makes it
retrieve 100 documents deep; pass ``depth=100`` to match those runs exactly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core.base.response.schema import Response
from llama_index.core.evaluation import BaseEvaluator, EvaluationResult, RetrieverEvaluator
from llama_index.core.evaluation.retrieval.base import RetrievalEvalMode
from llama_index.core.prompts.mixin import PromptDictType, PromptMixinType
from llama_index.core.schema import NodeWithScore
from pydantic import Field

from indexer.eval import metrics as m
from indexer.eval.datasets import load_dataset
from indexer.query.llama_index import IndexerRetriever


def dataset_questions(path: str | os.PathLike[str], **options: Any) -> list[tuple[str, list[str]]]:
    """The judged questions of a dataset ``indexer eval`` reads, with their relevant document ids
    (files of the corpus): the ``expected_ids`` of a document-level evaluation."""
    dataset = load_dataset(Path(path), **options)
    return [
        (q.question, sorted(doc for doc, grade in q.qrels.items() if grade >= 1))
        for q in dataset.questions
        if q.qrels
    ]


def ranked_documents(nodes: Sequence[NodeWithScore]) -> list[str]:
    """Documents best first, each at its best chunk's score, as ``indexer eval`` ranks them."""
    best = m.max_score_per_document([(n.node.ref_doc_id or n.node.node_id, n.score or 0.0) for n in nodes])
    return m.rank_documents(best)


class DocumentRetrieverEvaluator(RetrieverEvaluator):
    """``RetrieverEvaluator`` scoring documents the way ``indexer eval`` does (see the module's
    docstring): the retrieved ids are the first ``k`` documents, so ``HitRate`` is ``hit@k`` and
    ``MRR`` is ``mrr@k``. Over an ``IndexerRetriever``, chunks are retrieved as ``indexer eval``
    retrieves them (twice ``depth``, more until ``depth`` documents are found or the index runs
    out); another retriever is called once, as configured."""

    k: int = Field(10, description="The cut-off: hit@k and mrr@k.")
    depth: int | None = Field(
        None, description="Documents to retrieve (default: k, or query.top_k when larger), as indexer eval."
    )

    async def _aget_retrieved_ids_and_texts(
        self, query: str, mode: RetrievalEvalMode = RetrievalEvalMode.TEXT
    ) -> tuple[list[str], list[str]]:
        nodes = await self._retrieve(query)
        for postprocessor in self.node_postprocessors or ():
            nodes = postprocessor.postprocess_nodes(nodes, query_str=query)
        ranked = ranked_documents(nodes)[: self.k]
        text: dict[str, str] = {}
        for n in nodes:
            text.setdefault(n.node.ref_doc_id or n.node.node_id, n.node.get_content())
        return ranked, [text[doc] for doc in ranked]

    async def _retrieve(self, query: str) -> list[NodeWithScore]:
        retriever = self.retriever
        if not isinstance(retriever, IndexerRetriever):
            return await retriever.aretrieve(query)
        engine = retriever.engine
        depth = max(self.depth or self.k, self.k, engine.config.query.top_k)
        total = max(engine.manifest().chunk_count, 1)
        n = min(depth * 2, total)
        while True:  # as indexer.eval.scoring.QuestionScorer._retrieve_documents
            nodes = await retriever.with_top_k(n).aretrieve(query)
            found = len({node.node.ref_doc_id for node in nodes})
            if found >= depth or len(nodes) < n or n >= total:
                return nodes
            n = min(n * 2, total)


class DocumentHitEvaluator(BaseEvaluator):
    """A ``BaseEvaluator`` for ``BatchEvalRunner`` over ``Indexer.as_query_engine()``: scores a
    response's ``source_nodes`` (the passages its prompt held, best first) on documents, as
    ``indexer eval`` does: ``metric`` ``"hit_rate"`` (hit@k) or ``"mrr"`` (mrr@k). The relevant
    documents come as ``expected_ids`` (``eval_kwargs_lists={"expected_ids": [...]}``). No LLM
    judges anything; ``passing`` is whether a relevant document is among the first ``k``.

    The numbers equal ``indexer eval``'s when the query engine retrieves what it retrieves: as many
    passages as hold ``k`` documents (``as_query_engine(similarity_top_k=...)``) and all of them in
    the prompt (no LLM, or an ``llm.n_ctx`` that holds them)."""

    def __init__(self, metric: str = "hit_rate", k: int = 10) -> None:
        if metric not in ("hit_rate", "mrr"):
            raise ValueError(f"metric {metric!r}: use 'hit_rate' or 'mrr'")
        self.metric = metric
        self.k = k

    def _get_prompts(self) -> PromptDictType:
        return {}

    def _update_prompts(self, prompts_dict: PromptDictType) -> None:
        pass

    def _get_prompt_modules(self) -> PromptMixinType:
        return {}

    async def aevaluate_response(
        self, query: str | None = None, response: Response | None = None, **kwargs: Any
    ) -> EvaluationResult:
        nodes = list(response.source_nodes) if response is not None else []
        return self._score(query, response.response if response is not None else None, nodes, **kwargs)

    async def aevaluate(
        self,
        query: str | None = None,
        response: str | None = None,
        contexts: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> EvaluationResult:
        raise ValueError("DocumentHitEvaluator scores a Response's source_nodes: use evaluate_response")

    def _score(
        self, query: str | None, answer: str | None, nodes: list[NodeWithScore], **kwargs: Any
    ) -> EvaluationResult:
        expected = kwargs.get("expected_ids")
        if not expected:
            raise ValueError("DocumentHitEvaluator needs expected_ids: the question's relevant documents")
        qrels = {str(doc): 1 for doc in expected}
        ranked = ranked_documents(nodes)
        score = (m.hit_at_k if self.metric == "hit_rate" else m.mrr_at_k)(ranked, qrels, self.k)
        return EvaluationResult(
            query=query,
            response=answer,
            contexts=[n.node.get_content() for n in nodes],
            passing=m.hit_at_k(ranked, qrels, self.k) > 0,
            score=score,
            feedback=f"documents ranked: {', '.join(ranked[: self.k])}",
        )
