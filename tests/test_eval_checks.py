"""What `indexer eval` reads off checked answers (issue 27, item 6): the shares abstained, flagged,
cited (by the model or the system), answered correctly, and supported sentences stating digits no
source holds. Hand-made ``Answer`` records, as the query engine gives them, so the numbers are
known; then one run through the real engine with ``answer_style: extract``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.eval import metrics as m
from indexer.eval.aggregate import aggregate
from indexer.eval.spec import default_metrics
from indexer.query.attribution import Sentence
from indexer.query.engine import NOT_IN_DOCUMENTS, Answer, Source
from tests.conftest import SAMPLE_DIR, SAMPLE_QUESTIONS, write_config

PASSAGES = [
    Source(1, 0.9, "hardware.md", "hardware.md", "The EU mast talks to the console on 868 MHz."),
    Source(2, 0.7, "maintenance.txt", "maintenance.txt", "Replace the desiccant pack every six months."),
]


def _sentence(text: str, *, supported: bool = True, cited_by: str = "system", cites: int = 1) -> Sentence:
    return Sentence(text, [cites], 0.6 if supported else 0.1, supported, cited_by, None if supported else "x")  # type: ignore[arg-type]


def _checks(answer: Answer, references: list[str]) -> dict[str, float]:
    """The checks of one answer, as eval's scoring hands them over."""
    return m.check_scores(
        abstained=answer.abstained,
        sentences=[s.to_dict() for s in answer.sentences],
        citations=answer.citations,
        answer=answer.answer or "",
        source_texts=[s.text for s in answer.sources],
        references=references,
    )


def test_a_supported_answer_the_model_cited_is_cited_unflagged_and_correct() -> None:
    text = "The European mast uses 868 MHz [1]."
    answer = Answer(text, PASSAGES, sentences=[_sentence(text, cited_by="model")])
    assert _checks(answer, ["868 MHz"]) == {
        "abstained": 0.0,
        "answered_correct": 1.0,
        "flagged": 0.0,
        "cited": 1.0,
        "model_cited": 1.0,
        "unflagged_number": 0.0,  # the [1] is a citation, not a number the sentence states
    }


def test_a_citation_the_system_added_counts_as_cited_not_as_the_models() -> None:
    text = "It uses 868 MHz."
    answer = Answer(text, PASSAGES, sentences=[_sentence(text, cited_by="system")])
    checks = _checks(answer, ["868 MHz"])
    assert (checks["cited"], checks["model_cited"]) == (1.0, 0.0)


def test_an_answer_with_one_unsupported_sentence_is_flagged() -> None:
    first, second = "It uses 868 MHz.", "The desiccant is replaced every 12 months."
    answer = Answer(
        f"{first} {second}",
        PASSAGES,
        sentences=[_sentence(first), _sentence(second, supported=False, cites=2)],
    )
    checks = _checks(answer, ["868 MHz"])
    assert checks["flagged"] == 1.0
    # The invented 12 is flagged, so it is no unflagged number; the answer still holds the reference.
    assert checks["unflagged_number"] == 0.0 and checks["answered_correct"] == 1.0


def test_a_supported_sentence_stating_a_number_no_source_holds_is_counted() -> None:
    # Attribution let it through (a fault the audit exists to catch): 1234567890 is in no passage.
    text = "The door code is 1234567890."
    answer = Answer(text, PASSAGES, sentences=[_sentence(text)])
    checks = _checks(answer, ["ask Maria Lopes"])
    assert checks["unflagged_number"] == 1.0
    assert (checks["flagged"], checks["answered_correct"]) == (0.0, 0.0)


def test_an_abstained_answer_counts_as_abstained_and_never_as_correct_flagged_or_cited() -> None:
    answer = Answer(NOT_IN_DOCUMENTS, PASSAGES, abstained=True)
    assert _checks(answer, ["868 MHz"]) == {"abstained": 1.0, "answered_correct": 0.0}
    # An unanswerable question has no references: only abstained is scored.
    assert _checks(answer, []) == {"abstained": 1.0}


def test_a_quoted_value_is_answered_correctly_as_it_scores_on_f1() -> None:
    # The extract's quote marks and [n] are how the answer is shown, not what it says.
    text = "“868 MHz” [1]"
    answer = Answer(text, PASSAGES, sentences=[_sentence(text)])
    assert _checks(answer, ["868 MHz"])["answered_correct"] == 1.0


def test_answered_correct_needs_the_reference_as_whole_words() -> None:
    assert m.contains_answer("Mount it 1.5 m above the ground.", ["1.5 meters", "1.5 m"])
    assert not m.contains_answer("It uses 8680 MHz.", ["868 MHz"])
    assert not m.contains_answer("", ["868 MHz"])


def test_shares_are_over_the_answers_given_and_abstained_over_all_questions() -> None:
    supported = "It uses 868 MHz."
    answers = [
        Answer(supported, PASSAGES, sentences=[_sentence(supported, cited_by="model")]),
        Answer(supported, PASSAGES, sentences=[_sentence(supported, supported=False)]),
        Answer(NOT_IN_DOCUMENTS, PASSAGES, abstained=True),
        Answer(NOT_IN_DOCUMENTS, PASSAGES, abstained=True),
    ]
    metrics = list(m.CHECK_METRICS)
    records = [{"metrics": _checks(a, ["868 MHz"]), "latency": {}} for a in answers]
    summary = aggregate(records, metrics).summary
    assert summary["abstained"] == 0.5
    assert summary["answered_correct"] == 0.5
    # Two answers were given: one of them flagged, both cited, one by the model.
    assert (summary["flagged"], summary["cited"], summary["model_cited"]) == (0.5, 1.0, 0.5)


def test_the_checks_are_metrics_eval_knows_and_measures_by_default() -> None:
    for name in m.CHECK_METRICS:
        assert m.parse_metric(name) == (name, None)
        assert name in default_metrics(judge=False)
    with pytest.raises(ValueError, match="abstained"):
        m.parse_metric("abstained@5")


@pytest.mark.slow
def test_eval_records_checked_answers_extract_quotes_and_cites_every_answer(
    tmp_path: Path, tiny_gguf: Path
) -> None:
    from indexer.eval.session import evaluate, make_spec

    unanswerable = tmp_path / "unanswerable.jsonl"
    unanswerable.write_text('{"id": "u1", "question": "What is the CEO\'s salary?"}\n')
    config = write_config(
        tmp_path, SAMPLE_DIR, model_path=tiny_gguf, llm={"n_threads": 1}, query={"answer_style": "extract"}
    )
    spec = make_spec(config, datasets=[SAMPLE_QUESTIONS, unanswerable], limit=3, answers=True)
    outcome = evaluate(spec, out=tmp_path / "runs", chart=False)
    answerable, off_topic = outcome.summary["results"]
    # extract quotes a passage sentence with its citation: cited by the system, supported.
    assert answerable["summary"]["cited"] == 1.0 and answerable["summary"]["model_cited"] == 0.0
    assert answerable["summary"]["flagged"] == 0.0 and answerable["summary"]["unflagged_number"] == 0.0
    assert off_topic["summary"] == {"abstained": 1.0}
    records = [json.loads(x) for x in (outcome.run_dir / "questions.jsonl").read_text().splitlines()]
    for record in records:
        assert isinstance(record["abstained"], bool) and isinstance(record["citations"], list)
        if not record["abstained"]:
            (sentence,) = record["sentences"]
            assert sentence["cited_by"] == "system" and sentence["citations"] == record["citations"]
            assert record["answer"].startswith("“")  # the quote the user is shown, not the model's text
    report = (outcome.run_dir / "report.md").read_text()
    assert "| flagged |" in report or " flagged " in report


def test_em_and_f1_score_what_the_answer_says_not_its_citations_or_quote_marks() -> None:
    shown = "“The EU mast uses 868 MHz.” [1]"
    assert m.answer_text(shown) == "The EU mast uses 868 MHz."
    assert m.exact_match(m.answer_text("“868 MHz” [1, 2]"), ["868 MHz"]) == 1.0
    # SQuAD's normalisation alone keeps the curly quote on the token and the citation's digit.
    assert m.exact_match("“868 MHz” [1]", ["868 MHz"]) == 0.0
