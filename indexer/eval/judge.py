"""LLM-judged answer quality: faithfulness (is the answer supported by the retrieved passages?)
and relevancy (does it address the question?), as three-level verdicts in constrained JSON.

A verdict the judge fails to give is recorded as a failure with its reason and left out of the
average; the report counts failures next to the score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole

from indexer.eval.structured import StructuredOutputError, ask_json
from indexer.query.engine import fill_placeholders

VERDICT_SCORES = {"yes": 1.0, "partly": 0.5, "no": 0.0}
# A short reason first (models judge better after a sentence of thought), bounded so that the
# verdict always fits in the token budget.
_REASON_CHARS = 200
JUDGE_MAX_TOKENS = 400

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "maxLength": _REASON_CHARS},
        "verdict": {"type": "string", "enum": list(VERDICT_SCORES)},
    },
    "required": ["reason", "verdict"],
}

_SYSTEM = (
    "You are a strict evaluator of answers produced by a retrieval-augmented assistant. "
    "Reply only with a JSON object: a one-sentence reason, then the verdict yes, partly or no."
)

_FAITHFULNESS = (
    "Context passages:\n{context}\n\nAnswer to evaluate:\n{answer}\n\n"
    "Is every claim of the answer supported by the context passages? "
    "yes: all claims are supported; partly: some are; no: the answer is not supported by them."
)

_RELEVANCY = (
    "Question:\n{question}\n\nAnswer to evaluate:\n{answer}\n\n"
    "Does the answer address the question? "
    "yes: it answers it; partly: it answers part of it; no: it does not answer it."
)


@dataclass
class Verdict:
    score: float | None
    verdict: str | None = None
    reason: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def judge_faithfulness(llm: Any, answer: str, contexts: list[str]) -> Verdict:
    """Passages are dropped from the end until the prompt fits the judge's context window."""
    kept = list(contexts)
    while True:
        context = "\n\n".join(f"[{i}] {text}" for i, text in enumerate(kept, start=1)) or "(none)"
        messages = _messages(fill_placeholders(_FAITHFULNESS, context=context, answer=answer))
        if len(kept) <= 1 or _fits(llm, messages):
            return _ask(llm, messages)
        kept.pop()


def judge_relevancy(llm: Any, question: str, answer: str) -> Verdict:
    return _ask(llm, _messages(fill_placeholders(_RELEVANCY, question=question, answer=answer)))


def _messages(user: str) -> list[ChatMessage]:
    return [
        ChatMessage(role=MessageRole.SYSTEM, content=_SYSTEM),
        ChatMessage(role=MessageRole.USER, content=user),
    ]


def _fits(llm: Any, messages: list[ChatMessage]) -> bool:
    return llm.count_tokens(messages) + JUDGE_MAX_TOKENS <= llm.n_ctx


def _ask(llm: Any, messages: list[ChatMessage]) -> Verdict:
    try:
        data = ask_json(llm, messages, VERDICT_SCHEMA, max_tokens=JUDGE_MAX_TOKENS)
    except StructuredOutputError as exc:
        return Verdict(score=None, error=str(exc))
    verdict = str(data["verdict"]).strip().lower()
    if verdict not in VERDICT_SCORES:
        return Verdict(score=None, error=f"unknown verdict {verdict!r}")
    return Verdict(score=VERDICT_SCORES[verdict], verdict=verdict, reason=str(data["reason"]))
