"""LlamaIndex objects from the Python API, used the way LlamaIndex users use them: a retriever, a
query engine (streaming and async too), a chat engine, the LLM, the embedding model, and
LlamaIndex's own evaluators, which score what ``indexer eval`` scores."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.base.response.schema import Response, StreamingResponse
from llama_index.core.chat_engine.types import AgentChatResponse, BaseChatEngine, StreamingAgentChatResponse
from llama_index.core.evaluation import MRR, BatchEvalRunner, HitRate
from llama_index.core.llms import LLM
from llama_index.core.schema import NodeRelationship, QueryBundle, TextNode
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters

from indexer import Indexer
from indexer.api import evaluate
from indexer.errors import ConfigError
from tests.conftest import SAMPLE_QUESTIONS

QUESTION = "How often should the silica gel desiccant pack in the mast be replaced?"


@pytest.fixture(scope="module")
def sources_only(built_sample: Path) -> Indexer:
    return Indexer.from_config(built_sample, {"llm.provider": "none"})


@pytest.fixture(scope="module")
def tiny(built_sample: Path) -> Indexer:
    return Indexer.from_config(built_sample, {"llm.max_new_tokens": 8})


def test_retriever_gives_indexer_passages_as_nodes(sources_only: Indexer) -> None:
    retriever = sources_only.as_retriever(similarity_top_k=3, mode="vector")
    assert isinstance(retriever, BaseRetriever)
    nodes = retriever.retrieve(QUESTION)
    passages = sources_only.retrieve(QUESTION, top_k=3, mode="vector")
    assert len(nodes) == 3
    for node, source in zip(nodes, passages, strict=True):
        assert isinstance(node.node, TextNode)
        assert node.node.node_id == source.chunk_id and node.node.get_content() == source.text
        assert node.score == source.score  # cosine, as indexer shows it
        assert node.node.ref_doc_id == source.doc_id == node.node.metadata["file"]
        assert node.node.relationships[NodeRelationship.SOURCE].node_id == source.doc_id
        assert {"start_char", "end_char", "chunk"} <= node.node.metadata.keys()
        assert not any(k.startswith(("indexer:", "_")) for k in node.node.metadata)
    assert nodes[0].node.ref_doc_id == "guides/maintenance.txt"
    assert len(sources_only.as_retriever().retrieve(QUESTION)) == sources_only.config.query.top_k


def test_retriever_takes_modes_and_both_kinds_of_filters(sources_only: Indexer) -> None:
    question = "Which radio frequency does the mast use?"
    for mode in ("vector", "bm25", "hybrid"):
        nodes = sources_only.as_retriever(similarity_top_k=2, mode=mode).retrieve(question)
        assert [n.node.node_id for n in nodes] == [
            s.chunk_id for s in sources_only.retrieve(question, top_k=2, mode=mode)
        ]
    by_mapping = sources_only.as_retriever(filters={"path": "guides/*"}).retrieve(question)
    assert by_mapping and all(n.node.ref_doc_id.startswith("guides/") for n in by_mapping)
    eq = MetadataFilters(filters=[MetadataFilter(key="file", value="hardware.md")])
    assert {n.node.ref_doc_id for n in sources_only.as_retriever(filters=eq).retrieve(question)} == {
        "hardware.md"
    }
    ranged = MetadataFilters(filters=[MetadataFilter(key="page", value=2, operator=FilterOperator.GT)])
    with pytest.raises(ConfigError, match=r"FilterOperator\.EQ"):
        sources_only.as_retriever(filters=ranged)


def test_query_engine_without_an_llm_answers_none_with_the_notice(sources_only: Indexer) -> None:
    engine = sources_only.as_query_engine(similarity_top_k=3)
    assert isinstance(engine, BaseQueryEngine)
    response = engine.query(QUESTION)
    answer = sources_only.query(QUESTION, top_k=3)
    assert isinstance(response, Response) and response.response is None is answer.answer
    assert (response.metadata or {})["notice"] == answer.notice
    assert (response.metadata or {})["usage"] is None
    chunk_ids = [s.chunk_id for s in answer.sources]
    assert [n.node.node_id for n in response.source_nodes] == chunk_ids
    assert [n.node.node_id for n in engine.retrieve(QueryBundle(QUESTION))] == chunk_ids


def test_query_engine_numbers_source_nodes_as_the_answer_cites_them(tiny: Indexer) -> None:
    engine = tiny.as_query_engine(similarity_top_k=2)
    response = engine.query(QUESTION)
    answer = tiny.query(QUESTION, top_k=2)
    assert isinstance(response, Response) and isinstance(response.response, str)
    # [n] in the answer is source_nodes[n - 1]: the prompt's passages, in rank order.
    assert [n.node.node_id for n in response.source_nodes] == [s.chunk_id for s in answer.sources]
    metadata = response.metadata or {}
    assert metadata["citations"] == answer.citations and metadata["question"] == QUESTION
    assert metadata["usage"]["completion_tokens"] > 0 and metadata["finish_reason"] in ("stop", "length")


def test_streaming_and_async_queries(tiny: Indexer) -> None:
    streaming = tiny.as_query_engine(streaming=True, similarity_top_k=2)
    response = streaming.query(QUESTION)
    assert isinstance(response, StreamingResponse) and len(response.source_nodes) == 2
    assert (response.metadata or {})["usage"] is None  # known once the stream is consumed
    pieces = list(response.response_gen)
    assert pieces and all(isinstance(p, str) for p in pieces)
    assert (response.metadata or {})["usage"]["completion_tokens"] > 0

    async def both() -> tuple[object, object]:
        plain = tiny.as_query_engine(similarity_top_k=2)
        return await asyncio.gather(plain.aquery(QUESTION), streaming.aquery(QUESTION))

    answered, streamed = asyncio.run(both())
    assert isinstance(answered, Response) and isinstance(answered.response, str)
    assert isinstance(streamed, StreamingResponse) and "".join(streamed.response_gen) is not None


def test_chat_engine_condenses_follow_ups_as_indexer_chat(sources_only: Indexer) -> None:
    # Without a model the condensed question is the last question plus the follow-up: exact.
    chat = sources_only.as_chat_engine(similarity_top_k=3)
    assert isinstance(chat, BaseChatEngine)
    first = chat.chat(QUESTION)
    assert isinstance(first, AgentChatResponse) and first.response == "" and first.source_nodes
    follow = chat.chat("And how often is that?")
    assert (follow.metadata or {})["question"] == f"{QUESTION} And how often is that?"
    session = sources_only.chat(top_k=3)
    session.remember(QUESTION, session.ask(QUESTION))
    same = session.ask("And how often is that?")
    assert [n.node.node_id for n in follow.source_nodes] == [s.chunk_id for s in same.sources]
    assert [m.role for m in chat.chat_history] == [MessageRole.USER, MessageRole.USER]
    chat.reset()
    assert chat.chat_history == []
    assert (chat.chat("And how often is that?").metadata or {})["question"] == "And how often is that?"
    given = [ChatMessage(role=MessageRole.USER, content=QUESTION)]
    assert (chat.chat("And then?", chat_history=given).metadata or {})["question"] == f"{QUESTION} And then?"


def test_chat_engine_streams_and_remembers_each_turn(tiny: Indexer) -> None:
    chat = tiny.as_chat_engine(similarity_top_k=2)
    streamed = chat.stream_chat(QUESTION)
    assert isinstance(streamed, StreamingAgentChatResponse) and len(streamed.source_nodes) == 2
    text = "".join(streamed.response_gen)
    assert chat.chat_history[0].content == QUESTION
    assert chat.chat_history[-1].role == MessageRole.ASSISTANT and chat.chat_history[-1].content == text

    async def follow_ups() -> tuple[AgentChatResponse, str]:
        answered = await chat.achat("And what colour does it turn?")
        stream = await chat.astream_chat("Where is it?")
        return answered, "".join([piece async for piece in stream.async_response_gen()])

    answered, _ = asyncio.run(follow_ups())
    assert isinstance(answered, AgentChatResponse) and answered.source_nodes
    assert [m.content for m in chat.chat_history if m.role == MessageRole.USER] == [
        QUESTION,
        "And what colour does it turn?",
        "Where is it?",
    ]


def test_llm_and_embed_model_are_llama_index_components(tiny: Indexer, sources_only: Indexer) -> None:
    llm = tiny.llm
    assert isinstance(llm, LLM)
    assert llm.metadata.context_window == tiny.config.llm.n_ctx and llm.metadata.is_chat_model
    reply = llm.chat([ChatMessage(role=MessageRole.USER, content="Hello")])
    assert (
        isinstance(reply.message.content, str) and reply.additional_kwargs["usage"]["completion_tokens"] > 0
    )
    assert reply.additional_kwargs["usage"]["completion_tokens"] <= tiny.config.llm.max_new_tokens
    # The chat template renders the prompt, as the engine's own answers do.
    assert llm.chat_model.last_prompt.text != "Hello" and "Hello" in llm.chat_model.last_prompt.text
    deltas = [r.delta for r in llm.stream_chat([ChatMessage(role=MessageRole.USER, content="Hi")])]
    assert deltas and all(isinstance(d, str) for d in deltas)
    assert isinstance(llm.complete("Hello").text, str)
    assert [c.delta for c in llm.stream_complete("Hello")]
    assert sources_only.llm is None and sources_only.llm_notice is None
    embed = sources_only.embed_model
    assert isinstance(embed, BaseEmbedding) and len(embed.get_text_embedding("rain gauge")) == 384


@pytest.mark.slow
def test_smollm2_streams_a_query_through_its_chat_template(built_sample: Path, smollm2_gguf: Path) -> None:
    ix = Indexer.from_config(
        built_sample, {"llm.model_path": str(smollm2_gguf), "llm.n_ctx": 2048, "llm.max_new_tokens": 48}
    )
    response = ix.as_query_engine(streaming=True, similarity_top_k=2).query(QUESTION)
    assert isinstance(response, StreamingResponse) and len(response.source_nodes) == 2
    pieces = list(response.response_gen)
    assert len(pieces) >= 2 and all(isinstance(p, str) for p in pieces)
    metadata = response.metadata or {}
    assert 0 < metadata["usage"]["completion_tokens"] <= 48
    assert all(marker not in "".join(pieces) for marker in ("<|im_start|>", "<|im_end|>"))
    llm = ix.llm
    assert llm is not None
    reply = llm.chat([ChatMessage(role=MessageRole.USER, content="What is the capital of France?")])
    assert "<|im_start|>assistant" in llm.chat_model.last_prompt.text
    assert reply.message.content and "<|im_end|>" not in reply.message.content
    assert reply.additional_kwargs["finish_reason"] in ("stop", "length")


def _eval_records(run_dir: Path) -> dict[str, dict[str, float]]:
    lines = (run_dir / "questions.jsonl").read_text().splitlines()
    return {(r := json.loads(line))["question"]: r["metrics"] for line in lines}


@pytest.mark.slow
def test_llama_index_evaluators_score_as_indexer_eval(built_sample: Path, tmp_path: Path) -> None:
    from indexer.eval.llama_index import DocumentHitEvaluator, DocumentRetrieverEvaluator, dataset_questions

    k, settings = 2, {"retrieval.mode": "vector"}  # vector at k=2 misses some: not every score is 1
    outcome = evaluate(
        built_sample,
        datasets=[SAMPLE_QUESTIONS],
        metrics=[f"hit@{k}", f"mrr@{k}"],
        answers=False,
        overrides=settings,
        out=tmp_path / "runs",
        index_cache=tmp_path / "indexes",
        chart=False,
    )
    theirs = _eval_records(outcome.run_dir)
    summary = outcome.summary["results"][0]["summary"]

    # indexer eval turns de-duplication off; answers are not needed to score retrieval.
    ix = Indexer.from_config(built_sample, {**settings, "retrieval.dedupe": False, "llm.provider": "none"})
    questions = dataset_questions(SAMPLE_QUESTIONS)
    assert len(questions) == len(theirs) == 10
    evaluator = DocumentRetrieverEvaluator(metrics=[HitRate(), MRR()], retriever=ix.as_retriever(), k=k)
    ours = {q: evaluator.evaluate(q, expected_ids=files).metric_vals_dict for q, files in questions}
    for question, scores in ours.items():
        assert scores == {"hit_rate": theirs[question][f"hit@{k}"], "mrr": theirs[question][f"mrr@{k}"]}
    hit_rate = sum(s["hit_rate"] for s in ours.values()) / len(ours)
    mrr = sum(s["mrr"] for s in ours.values()) / len(ours)
    assert (hit_rate, mrr) == (summary[f"hit@{k}"], summary[f"mrr@{k}"])
    assert mrr < 1.0

    runner = BatchEvalRunner(
        {"hit_rate": DocumentHitEvaluator("hit_rate", k=k), "mrr": DocumentHitEvaluator("mrr", k=k)},
        workers=2,
    )
    results = runner.evaluate_queries(
        ix.as_query_engine(similarity_top_k=2 * k),
        queries=[q for q, _ in questions],
        expected_ids=[files for _, files in questions],
    )
    assert [r.score for r in results["hit_rate"]] == [ours[q]["hit_rate"] for q, _ in questions]
    assert [r.score for r in results["mrr"]] == [ours[q]["mrr"] for q, _ in questions]


@pytest.mark.slow
def test_batch_eval_runner_runs_over_answers_from_the_llm(tiny: Indexer) -> None:
    from indexer.eval.llama_index import DocumentHitEvaluator, dataset_questions

    questions = dataset_questions(SAMPLE_QUESTIONS)[:3]
    runner = BatchEvalRunner({"hit_rate": DocumentHitEvaluator("hit_rate", k=2)}, workers=2)
    results = runner.evaluate_queries(
        tiny.as_query_engine(similarity_top_k=4),
        queries=[q for q, _ in questions],
        expected_ids=[files for _, files in questions],
    )
    assert len(results["hit_rate"]) == 3
    assert all(isinstance(r.response, str) and r.score in (0.0, 1.0) for r in results["hit_rate"])


def test_llama_index_own_query_engine_runs_on_indexer_parts(tiny: Indexer) -> None:
    from llama_index.core.query_engine import RetrieverQueryEngine

    engine = RetrieverQueryEngine.from_args(tiny.as_retriever(similarity_top_k=2), llm=tiny.llm)
    response = engine.query(QUESTION)
    assert isinstance(response, Response) and isinstance(response.response, str)
    assert [n.node.node_id for n in response.source_nodes] == [
        s.chunk_id for s in tiny.retrieve(QUESTION, top_k=2)
    ]
