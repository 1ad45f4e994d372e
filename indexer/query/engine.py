"""Query: retrieve passages for a question and answer it with the local LLM, citing sources.

The prompt is laid out for llama.cpp's KV cache: the system prompt first, then the numbered
context, then the question. llama.cpp keeps the tokens of the previous call and evaluates only
what differs after their longest common prefix, so asking again over the same passages does not
re-read them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from indexer.components import Components
from indexer.components.chat_model import Message, TokenStream, Usage, role_of, text_of
from indexer.config.models import Config, QueryConfig, RetrievalMode
from indexer.errors import IndexerError, ModelError
from indexer.index.index import Index
from indexer.index.manifest import Manifest, check_compatible
from indexer.index.store import DOC_ID
from indexer.query import relevance
from indexer.query.attribution import Checked, Sentence, answer_checker, question_embedder
from indexer.query.filters import Filters, FilterValue
from indexer.query.retrieval import RETRIEVAL_MODES, Ranked, Retrieved, Retriever
from indexer.query.runaway import RunawayGuard, turn_labels
from indexer.query.text import unicode_problem

# What a source shows of its chunk's metadata (``--json``, HTTP, MCP): where it stands, and whether
# its text was read by OCR, with the engine's confidence (ingestion/ocr.py).
_CITATION_KEYS = (
    "page", "page_end", "section", "title", "start_char", "end_char", "chunk", "ocr", "ocr_confidence"
)
_CITATION_RE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_PLACEHOLDER_RE = re.compile(r"\{(\w+)\}")
_PASSAGE_TAG_RE = re.compile(r"<(/?\s*passage)", re.IGNORECASE)
_TAG_TEXT_RE = re.compile(r"[\r\n<>]+")
# What an abstaining answer says (the notice gives the numbers).
NOT_IN_DOCUMENTS = (
    "Not in your documents: no passage found is relevant enough to answer this. "
    "The nearest passages are listed as sources."
)
# Tokens the condensed question may take: a question, not an essay.
_CONDENSE_MAX_TOKENS = 96

if TYPE_CHECKING:
    # Annotations only: LlamaIndex's chat types load all of llama_index.core (1 to 4 s), which
    # neither retrieval nor an answer needs (prompts are chat_model.Message).
    from llama_index.core.base.llms.types import ChatMessage

History = Sequence["Message | ChatMessage | tuple[str, str] | Mapping[str, str]"]


@dataclass
class Source:
    rank: int
    score: float
    file: str
    doc_id: str
    text: str
    chunk_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    # On a scale that reads the same across questions, unlike ``score`` (indexer.query.relevance).
    relevance: float | None = None
    relevance_label: str | None = None

    def citation(self) -> str:
        where = self.file
        page, section = self.metadata.get("page"), self.metadata.get("section")
        end = self.metadata.get("page_end")
        if page and end and end != page:
            where += f", pages {page}-{end}"
        elif page:
            where += f", page {page}"
        if section:
            where += f", section {section}"
        return where

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "score": round(self.score, 6),
            "file": self.file,
            "doc_id": self.doc_id,
            "text": self.text,
            "chunk_id": self.chunk_id,
            "scores": {k: round(v, 6) for k, v in self.scores.items()},
            "relevance": None if self.relevance is None else round(self.relevance, 6),
            "relevance_label": self.relevance_label,
            **{k: v for k, v in self.metadata.items() if k in _CITATION_KEYS},
        }


def cited_numbers(answer: str | None, sources: Sequence[Source]) -> list[int]:
    """The source numbers an answer cites as [1], [2] or [1, 3], in order of first use; numbers
    that match no source are left out."""
    valid = {s.rank for s in sources}
    seen: list[int] = []
    for match in _CITATION_RE.finditer(answer or ""):
        for number in (int(n) for n in match.group(1).split(",")):
            if number in valid and number not in seen:
                seen.append(number)
    return seen


class Passages(list[Source]):
    """The passages retrieved for one question, best first, and what the reader should know about
    them (``notice``: a keyword index being rebuilt, filters that match no file). A list, so it is
    used as the sources themselves; the notice travels with them, never on a shared object.
    ``abstain``: why no passage is relevant enough to answer from, or None."""

    def __init__(
        self, sources: Sequence[Source] = (), notice: str | None = None, abstain: str | None = None
    ) -> None:
        super().__init__(sources)
        self.notice = notice
        self.abstain = abstain


@dataclass
class Answer:
    answer: str | None
    sources: list[Source]
    notice: str | None = None
    question: str | None = None
    stopped: bool = False
    usage: Usage | None = None
    finish_reason: str | None = None
    abstained: bool = False
    # Each sentence with its citations and support (see ``indexer.query.attribution``).
    sentences: list[Sentence] = field(default_factory=list)

    @property
    def citations(self) -> list[int]:
        """The model's ``[n]``, then the passages the system cited for sentences without one."""
        numbers = cited_numbers(self.answer, self.sources)
        numbers += [n for s in self.sentences for n in s.citations if n not in numbers]
        return list(dict.fromkeys(numbers))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"answer": self.answer, "sources": [s.to_dict() for s in self.sources]}
        data["citations"] = self.citations
        data["abstained"] = self.abstained
        data["sentences"] = [s.to_dict() for s in self.sentences]
        if self.question is not None:
            data["question"] = self.question
        if self.notice:
            data["notice"] = self.notice
        if self.stopped:
            data["stopped"] = True
        return data


class AnswerStream:
    """Text of an answer as it is generated; ``sources`` are known before the first piece, and
    ``answer`` holds the whole text once the stream is consumed. ``close()`` stops generation
    (e.g. on Ctrl-C); what was generated so far stays in ``answer``.

    Generation also stops when the answer runs away (an invented turn, a loop; see
    ``indexer.query.runaway``): ``notice`` then says why, and ``runaway`` holds that reason alone.
    ``usage`` counts this answer's tokens; ``finish_reason`` is ``"length"`` when it reached its
    ``max_tokens``, else ``"stop"``. ``abstained``: no passage was relevant enough, so the LLM was
    not asked; the answer (with an LLM configured) says so, the sources are the nearest passages."""

    def __init__(
        self,
        tokens: TokenStream | None,
        sources: list[Source],
        notice: str | None,
        *,
        question: str | None = None,
        guard: RunawayGuard | None = None,
        abstained: str | None = None,
        checker: Callable[[str | None, Sequence[Source]], Checked] | None = None,
    ) -> None:
        self._tokens = tokens
        self._guard = guard or RunawayGuard()
        self._checker = checker
        self._checked: Checked | None = None
        self.sources = sources
        self.notice = notice
        self.question = question
        self.answer: str | None = None if tokens is None else ""
        self.finished = tokens is None
        self.stopped = False
        self.runaway: str | None = None
        self.abstained = abstained is not None
        self._unsaid = abstained or None  # what an abstaining answer yields once, when iterated
        if abstained:
            self.answer = abstained

    def __iter__(self) -> Iterator[str]:
        if self._unsaid is not None:
            said, self._unsaid = self._unsaid, None
            yield said
        if self._tokens is None or self.finished:
            return
        guard = self._guard
        for piece in self._tokens:
            shown = guard.feed(piece)
            if shown:
                self.answer = (self.answer or "") + shown
                yield shown
            if guard.reason is not None:
                self.runaway = guard.reason
                self.notice = _join([self.notice or "", guard.reason])
                self._tokens.close()  # stops the model now, not at max_tokens
                break
        else:
            rest = guard.finish()
            if rest:
                self.answer = (self.answer or "") + rest
                yield rest
        self.finished = True

    def close(self) -> None:
        if not self.finished:
            self.stopped = True
            self.finished = True
        if self._tokens is not None:
            self._tokens.close()

    @property
    def citations(self) -> list[int]:
        return cited_numbers(self.answer, self.sources)

    @property
    def usage(self) -> Usage | None:
        """This answer's token counts (None without an LLM): complete once the stream has ended."""
        return self._tokens.usage if self._tokens is not None else None

    @property
    def finish_reason(self) -> str:
        if self._tokens is not None and self._tokens.finish_reason == "length" and self.runaway is None:
            return "length"
        return "stop"

    def checked(self) -> Checked:
        """The answer once generated, each sentence attributed to its passages and
        ``query.unsupported`` applied (computed once, at the end of the stream)."""
        if self._checked is None:
            if self._checker is None:
                self._checked = Checked(self.answer)
            else:
                self._checked = self._checker(self.answer, self.sources)
        return self._checked

    def result(self) -> Answer:
        for _ in self:
            pass
        checked = self.checked()
        return Answer(
            answer=checked.answer,
            sources=self.sources,
            notice=_join([self.notice or "", checked.notice or ""]),
            question=self.question,
            stopped=self.stopped,
            usage=self.usage,
            finish_reason=self.finish_reason if self._tokens is not None or self.abstained else None,
            abstained=self.abstained,
            sentences=checked.sentences,
        )


class QueryEngine:
    """Questions over ``index``, answered with the models of ``components``, whose config is the
    one every setting is read from."""

    def __init__(self, components: Components, index: Index) -> None:
        self.components = components
        self.index = index
        self._manifest: Manifest | None = None
        self._retriever = Retriever(components, index)

    @property
    def config(self) -> Config:
        return self.components.config

    def manifest(self) -> Manifest:
        """The index's committed manifest, checked against the config each time a new one is
        committed: a long-running process (a server, a folder watcher's) follows every build, and
        costs one stat of the manifest file per question while nothing changed."""
        manifest = self.index.current()
        if manifest is None:
            raise IndexerError(f"no index yet at {self.index.location}: run `indexer build CONFIG` first")
        if manifest is not self._manifest:
            check_compatible(manifest, self.components.query_embedder.identity, None)
            self._manifest = manifest
        return manifest

    def retrieve(
        self,
        question: str,
        top_k: int | None = None,
        filters: Mapping[str, FilterValue] | None = None,
        mode: RetrievalMode | None = None,
    ) -> Passages:
        """See ``Indexer.retrieve``."""
        question = _checked(question)
        manifest = self.manifest()
        wanted = Filters.from_mapping(self.config.retrieval.filters, filters)

        def search() -> Retrieved:
            store = self.index.chunk_store(create=False)
            if store is None:
                raise IndexerError(
                    f"the index's collection {self.index.collection_name()!r} is missing: "
                    "run `indexer build CONFIG --rebuild`"
                )
            return self._retriever.retrieve(
                question, top_k or self.config.query.top_k, wanted, manifest, store, _checked_mode(mode)
            )

        retrieved = self.index.reading(search)
        sources = [_source(rank, r) for rank, r in enumerate(retrieved.passages, start=1)]
        used = _checked_mode(mode) or self.config.retrieval.mode
        best = relevance.annotate(sources, self.config, used, retrieved.bm25_scale)
        return Passages(sources, _join(retrieved.notices), relevance.abstain_notice(best, self.config, used))

    def stream(
        self,
        question: str,
        top_k: int | None = None,
        filters: Mapping[str, FilterValue] | None = None,
        history: History | None = None,
        mode: RetrievalMode | None = None,
        max_tokens: int | None = None,
        retrieved: Passages | None = None,
    ) -> AnswerStream:
        """See ``Indexer.stream``. ``retrieved``: the passages of this question (without
        ``history``), retrieved already by ``retrieve(question, top_k, filters, mode)`` elsewhere
        (``query/prefetch.py``); None retrieves them here."""
        question = _checked(question)
        standalone = self.condense(question, history) if history else question
        if retrieved is not None and not history:
            sources = retrieved
        else:
            sources = self.retrieve(standalone, top_k, filters, mode=mode)
        notices = [sources.notice or ""]
        style = self.config.query.answer_style
        llm = self.components.llm
        if sources.abstain is not None and (llm is not None or style == "extract"):
            # Neither the LLM nor the extract is asked: either would answer from passages that
            # are not about the question.
            notices.append(sources.abstain)
            return AnswerStream(
                None, list(sources), _join(notices), question=standalone, abstained=NOT_IN_DOCUMENTS
            )
        if style == "extract":  # quoted from the passages: no model runs
            return AnswerStream(
                None, list(sources), _join(notices), question=standalone, checker=self._checker(standalone)
            )
        if llm is None:  # sources only, as asked: abstained is flagged, the notice stays as it was
            notices.append(self.components.llm_notice or "")
            extract = style == "auto" and sources.abstain is None
            checker = self._checker(standalone) if extract else None
            stream = AnswerStream(None, list(sources), _join(notices), question=standalone, checker=checker)
            stream.abstained = sources.abstain is not None
            return stream
        messages, kept, trim_notice = self._fit_to_context(standalone, list(sources))
        if trim_notice:
            notices.append(trim_notice)
        cap = self.config.llm.max_new_tokens
        tokens = llm.stream_tokens(messages, max_tokens=min(max_tokens or cap, cap))
        template = getattr(llm, "template", None)
        guard = RunawayGuard(turn_labels(template.template.source if template is not None else None))
        return AnswerStream(
            tokens, kept, _join(notices), question=standalone, guard=guard, checker=self._checker(standalone)
        )

    def query(
        self,
        question: str,
        top_k: int | None = None,
        filters: Mapping[str, FilterValue] | None = None,
        history: History | None = None,
        mode: RetrievalMode | None = None,
        max_tokens: int | None = None,
    ) -> Answer:
        """See ``Indexer.query``."""
        stream = self.stream(
            question, top_k, filters=filters, history=history, mode=mode, max_tokens=max_tokens
        )
        return stream.result()

    def _checker(self, question: str) -> Callable[[str | None, Sequence[Source]], Checked]:
        query = self.config.query
        return answer_checker(
            question_embedder(self.components), question, query.unsupported, query.answer_style
        )

    def messages(self, question: str, sources: list[Source]) -> list[Message]:
        return prompt_messages(self.config.query, question, sources)

    def condense(self, question: str, history: History) -> str:
        """A follow-up question rewritten to stand alone, using the conversation so far.

        Without an LLM, the last user question is prepended, which keeps the topic for retrieval.
        """
        turns = [_turn(t) for t in history]
        for n, (_, text) in enumerate(turns):
            problem = unicode_problem(text)
            if problem is not None:
                raise IndexerError(f"history.{n}.content: {problem}")
        if not turns:
            return question
        llm = self.components.llm
        if llm is None:
            last_user = next((text for role, text in reversed(turns) if role == "user"), "")
            return f"{last_user} {question}".strip()
        budget = self.config.llm.n_ctx - _CONDENSE_MAX_TOKENS
        while True:
            lines = "\n".join(f"{role.capitalize()}: {text}" for role, text in turns)
            prompt = fill_placeholders(self.config.query.condense_prompt, history=lines, question=question)
            messages = [
                Message("system", self.config.query.system_prompt),
                Message("user", prompt),
            ]
            if llm.count_tokens(messages) <= budget:
                break
            if not turns:
                return question
            turns = turns[1:]  # the oldest turn goes first
        text = "".join(llm.stream_tokens(messages, max_tokens=_CONDENSE_MAX_TOKENS))
        first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return first_line or question

    def _fit_to_context(
        self, question: str, sources: list[Source]
    ) -> tuple[list[Message], list[Source], str | None]:
        """Keep the most passages (best first) for which prompt + ``max_new_tokens`` fit ``n_ctx``,
        counted with the model's own tokenizer; if not even the best fits whole, shorten it."""
        llm = self.components.llm
        assert llm is not None
        n_ctx, answer_room = self.config.llm.n_ctx, self.config.llm.max_new_tokens
        budget = n_ctx - answer_room

        def fits(passages: list[Source]) -> bool:
            return llm.count_tokens(self.messages(question, passages)) <= budget

        if fits(sources):
            return self.messages(question, sources), sources, None
        if not fits([]):
            raise ModelError(
                f"the question and prompts alone do not fit llm.n_ctx ({n_ctx} tokens) with "
                f"llm.max_new_tokens ({answer_room}) left for the answer: raise llm.n_ctx, or "
                "shorten the question or query.system_prompt/qa_prompt"
            )
        low, high = 0, len(sources) - 1  # fits(sources[:low]) holds, fits(sources) does not
        while low < high:
            mid = (low + high + 1) // 2
            if fits(sources[:mid]):
                low = mid
            else:
                high = mid - 1
        room = f"llm.n_ctx ({n_ctx} tokens, {answer_room} kept for the answer)"
        if low > 0:
            kept = sources[:low]
            dropped = ", ".join(f"[{s.rank}]" for s in sources[low:])
            notice = (
                f"{len(sources) - low} lowest-ranked passage(s) ({dropped}) left out of the prompt "
                f"to fit {room}"
            )
            return self.messages(question, kept), kept, notice
        best = sources[0]
        short, long = 0, len(best.text)  # the longest prefix of the best passage that fits
        while short < long:
            mid = (short + long + 1) // 2
            if fits([_shortened(best, mid)]):
                short = mid
            else:
                long = mid - 1
        kept = [_shortened(best, short)]
        notice = f"passage [1] shortened to {short} of {len(best.text)} characters to fit {room}"
        if len(sources) > 1:
            notice += f"; {len(sources) - 1} lower-ranked passage(s) left out"
        return self.messages(question, kept), kept, notice


def prompt_messages(query: QueryConfig, question: str, sources: Sequence[Source]) -> list[Message]:
    """The system and user turns for a question over numbered passages."""
    context = "\n\n".join(passage_block(s) for s in sources)
    user = fill_placeholders(query.qa_prompt, context=context, question=question)
    return [
        Message("system", query.system_prompt),
        Message("user", user),
    ]


def fill_placeholders(template: str, **values: str) -> str:
    """Put ``values`` in for ``{name}`` in one pass: text put in is never scanned again, so a
    passage or a question that contains "{question}" stays literal (and braces need no escaping,
    unlike str.format)."""
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def passage_block(source: Source) -> str:
    """One passage, fenced so that its text cannot close its own block or open the next one:
    the number and source live in the opening tag, and tags inside the text are defused."""
    where = _TAG_TEXT_RE.sub(" ", source.citation()).replace('"', "'")
    text = _PASSAGE_TAG_RE.sub(lambda m: "&lt;" + m.group(1), source.text)
    return f'<passage n="{source.rank}" source="{where}">\n{text}\n</passage>'


def _shortened(source: Source, chars: int) -> Source:
    return Source(**{**source.__dict__, "text": source.text[:chars]})


def _turn(turn: Message | ChatMessage | tuple[str, str] | Mapping[str, str]) -> tuple[str, str]:
    if not isinstance(turn, Mapping | tuple | list):  # a Message or ChatMessage
        return role_of(turn), text_of(turn)
    if isinstance(turn, Mapping):
        return str(turn["role"]), str(turn["content"])
    role, text = turn
    return str(role), str(text)


def _join(notices: list[str]) -> str | None:
    text = "; ".join(n for n in notices if n)
    return text or None


def _checked_mode(mode: str | None) -> RetrievalMode | None:
    if mode is not None and mode not in RETRIEVAL_MODES:
        raise IndexerError(f"unknown retrieval mode {mode!r}: use one of {', '.join(RETRIEVAL_MODES)}")
    return mode  # type: ignore[return-value]


def _checked(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise IndexerError("the question is empty")
    problem = unicode_problem(question)
    if problem is not None:
        raise IndexerError(f"the question {problem}")
    return question.strip()


def _source(rank: int, ranked: Ranked) -> Source:
    hit = ranked.hit
    meta = hit.metadata
    doc_id = str(meta.get(DOC_ID, ""))
    return Source(
        rank=rank,
        score=ranked.score,
        file=str(meta.get("file", doc_id)),
        doc_id=doc_id,
        text=hit.text,
        chunk_id=hit.id,
        metadata=meta,
        scores=dict(ranked.scores),
    )
