"""Every answer sentence tied to the passage that supports it, and flagged where none does: hand-made
answers against hand-made passages with the bundled MiniLM, then through the CLI, HTTP and OpenAI
front doors with the tiny random GGUF (structure only)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from indexer.query.attribution import (
    REFUSAL,
    Embed,
    answer_checker,
    apply_policy,
    attribute,
    extract,
    question_embedder,
    split_sentences,
)
from indexer.query.engine import Source
from tests.adversarial.helpers import cli
from tests.conftest import SAMPLE_DIR, write_config

MAINTENANCE = (
    "EVERY SIX MONTHS\n----------------\n"
    "* Replace the silica gel desiccant pack inside the mast electronics\n"
    "  enclosure. When the indicator beads turn from orange to green the pack is\n"
    "  saturated and should be changed right away, even before six months.\n"
    "* Inspect the enclosure gasket and both cable glands for cracks.\n"
)
ONBOARDING = (
    "Welcome aboard. For the door code, ask Maria Lopes at reception. The notify service listens on "
    "port 9102. Staff get 27 paid holiday days a year. The PostgreSQL 16 upgrade happened on "
    "Saturday 20 April 2024."
)
RECIPE = "Whisk two eggs with 200 g of flour and a pinch of salt. Bake for twenty minutes at 180 degrees."
SOURCES = [
    Source(rank=1, score=0.9, file="maintenance.txt", doc_id="maintenance.txt", text=MAINTENANCE),
    Source(rank=2, score=0.8, file="onboarding.md", doc_id="onboarding.md", text=ONBOARDING),
    Source(rank=3, score=0.1, file="recipes.md", doc_id="recipes.md", text=RECIPE),
]
SENTENCE_KEYS = {"text", "citations", "support", "supported", "cited_by"}


@pytest.fixture(scope="module")
def embed(tmp_path_factory: pytest.TempPathFactory) -> Embed:
    from indexer.components import Components
    from indexer.config.loader import load_config

    config = write_config(tmp_path_factory.mktemp("attribution"), SAMPLE_DIR, llm={"provider": "none"})
    return question_embedder(Components(load_config(config)))


def one(embed: Embed, text: str, sources: list[Source] = SOURCES, question: str | None = None):
    [sentence] = attribute(text, sources, embed, question)
    return sentence


@pytest.mark.parametrize(
    "text",
    ["Replace the desiccant pack every six months.", "Replace the desiccant pack every 6 months."],
)
def test_a_number_the_passage_states_in_words_or_digits_is_supported(embed: Embed, text: str) -> None:
    sentence = one(embed, text)
    assert sentence.supported and sentence.reason is None
    assert sentence.citations == [1] and sentence.cited_by == "system"


def test_a_contradicted_number_is_flagged_though_the_right_passage_ranks_first(embed: Embed) -> None:
    # The demo's own mistake: "every 12 months" for a passage that says six months.
    sentence = one(embed, "Replace the desiccant pack every 12 months.")
    assert not sentence.supported
    assert sentence.citations == [1]  # still tied to the passage it is about
    assert "“12”" in (sentence.reason or "") and "no retrieved passage" in (sentence.reason or "")


@pytest.mark.parametrize(
    ("text", "question", "shown"),
    [
        ("The CEO's salary is £1.1 million.", "What is the CEO's salary?", "£1.1 million"),
        ("The door code is `1234567890`.", "What is the door code?", "1234567890"),
        ("It was upgraded on 2024-03-20.", "When was PostgreSQL upgraded?", "2024-03-20"),
        ("Ask John Smith for the door code.", "What is the door code?", "John Smith"),
    ],
)
def test_an_invented_number_code_date_or_name_is_flagged(
    embed: Embed, text: str, question: str, shown: str
) -> None:
    sentence = one(embed, text, question=question)
    assert not sentence.supported and f"“{shown}”" in (sentence.reason or "")
    assert sentence.cited_by == "system" and len(sentence.citations) == 1


@pytest.mark.parametrize(
    "text",
    [
        "Ask Maria Lopes for the door code.",
        "The notify service uses port 9102.",
        "Staff get twenty-seven paid holiday days.",
        "The upgrade happened on Saturday 20 April 2024.",
        "The upgrade was in April 2024.",
    ],
)
def test_names_numbers_and_dates_found_in_a_passage_are_supported(embed: Embed, text: str) -> None:
    sentence = one(embed, text)
    assert sentence.supported, sentence.reason
    assert sentence.citations == [2]


def test_a_value_from_the_wrong_row_is_flagged_and_the_right_one_is_not(embed: Embed) -> None:
    # A small model copies a real code from the passage, but from another row than the claim's.
    rows = "\n".join(Path(SAMPLE_DIR / "error_codes.csv").read_text().splitlines()[:18])
    table = [Source(rank=1, score=0.9, file="error_codes.csv", doc_id="error_codes.csv", text=rows)]
    claim = "The error code for the barometric pressure sensor not responding on the I2C bus is {}."
    wrong = one(embed, claim.format("E-503"), table)
    assert not wrong.supported and "“E-503”" in (wrong.reason or "") and "E-214" in (wrong.reason or "")
    assert one(embed, claim.format("E-214"), table).supported


def test_a_sentence_no_passage_is_about_is_flagged_without_any_fact(embed: Embed) -> None:
    sentence = one(embed, "Bananas are a good source of potassium.")
    assert not sentence.supported and "no retrieved passage supports it" in (sentence.reason or "")
    assert sentence.support < 0.3


def test_the_model_citations_are_kept_and_the_system_adds_only_where_there_are_none(embed: Embed) -> None:
    answer = (
        "The notify service listens on port 9102 [2]. Replace the desiccant pack every six months.\n"
        "Bake for twenty minutes. [3]"
    )
    sentences = attribute(answer, SOURCES, embed)
    assert [(s.citations, s.cited_by) for s in sentences] == [([2], "model"), ([1], "system"), ([3], "model")]
    assert all(s.supported for s in sentences)
    for s in sentences:  # offsets point into the answer text
        assert answer[s.start : s.end] == s.text


def test_a_model_citation_to_no_source_does_not_count(embed: Embed) -> None:
    sentence = one(embed, "The notify service listens on port 9102 [7].")
    assert sentence.cited_by == "system" and sentence.citations == [2]


def test_without_passages_every_sentence_is_unsupported_and_uncited(embed: Embed) -> None:
    [sentence] = attribute("The port is 9102.", [], embed)
    assert not sentence.supported and sentence.citations == [] and sentence.cited_by is None


def test_sentences_split_at_full_stops_and_lines_keeping_trailing_citations() -> None:
    answer = "First claim [1]. Second claim. [2]\n- item one\n- item two\n1. Step 1.5 m up. Then wait."
    texts = [answer[a:b] for a, b in split_sentences(answer)]
    assert texts == [
        "First claim [1].",
        "Second claim. [2]",
        "item one",
        "item two",
        "Step 1.5 m up.",
        "Then wait.",
    ]
    assert split_sentences("") == [] and split_sentences("  [1] ") == []
    wrapped = "A weather station designed for\nhobbyists and farms. It is solar\npowered."
    assert len(split_sentences(wrapped)) == 2


def test_drop_keeps_the_supported_sentences_and_refuse_withholds_the_answer(embed: Embed) -> None:
    answer = "The notify service uses port 9102 [2]. The CEO earns £1.1 million. Ask Maria Lopes."
    sentences = attribute(answer, SOURCES, embed)
    assert [s.supported for s in sentences] == [True, False, True]

    dropped = apply_policy(answer, sentences, "drop")
    assert dropped.answer == "The notify service uses port 9102 [2]. Ask Maria Lopes."
    assert [dropped.answer[s.start : s.end] for s in dropped.sentences] == [
        "The notify service uses port 9102 [2].",
        "Ask Maria Lopes.",
    ]
    assert "1 unsupported sentence" in (dropped.notice or "")

    refused = apply_policy(answer, sentences, "refuse")
    assert refused.answer == REFUSAL and refused.sentences == [] and "refuse" in (refused.notice or "")

    flagged = apply_policy(answer, sentences, "flag")
    assert flagged.answer == answer and flagged.sentences == sentences and flagged.notice is None
    assert apply_policy(answer, [s for s in sentences if s.supported], "refuse").answer == answer


def test_sentences_serialise_with_every_key(embed: Embed) -> None:
    [sentence] = attribute("The CEO earns £1.1 million.", SOURCES, embed)
    data = sentence.to_dict()
    assert SENTENCE_KEYS | {"reason", "start", "end"} == data.keys()
    assert json.loads(json.dumps(data)) == data


# -- through the front doors, with the tiny random GGUF: structure only ---------------------------


def _assert_checked(data: dict, sources: list[dict]) -> None:
    ranks = {s["rank"] for s in sources}
    answer = data["answer"]
    assert isinstance(data["sentences"], list)
    for s in data["sentences"]:
        assert s.keys() >= SENTENCE_KEYS
        assert s["cited_by"] in ("model", "system") and s["citations"] and set(s["citations"]) <= ranks
        assert 0 <= s["support"] <= 1 and isinstance(s["supported"], bool)
        assert s["supported"] or s["reason"]
        assert answer[s["start"] : s["end"]] == s["text"]
    if data["sentences"]:  # every answer with a sentence cites a passage
        assert set(data.get("citations", [c for s in data["sentences"] for c in s["citations"]])) & ranks


@pytest.mark.slow
def test_cli_json_carries_the_sentences_and_every_answer_cites(built_sample: Path) -> None:
    result = cli("query", str(built_sample), "How often is the desiccant pack replaced?", "--json")
    assert result.returncode == 0, result.stderr
    data = result.json()
    assert data["answer"] and data["sources"]
    _assert_checked(data, data["sources"])


@pytest.mark.slow
def test_cli_marks_each_sentence_after_the_answer(built_sample: Path) -> None:
    result = cli(
        "query",
        str(built_sample),
        "How often is the desiccant pack replaced?",
        "--set",
        "llm.max_new_tokens=24",
    )
    assert result.returncode == 0, result.stderr
    assert "Checked against the sources" in result.stdout and "Sources:" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["drop", "refuse"])
def test_drop_and_refuse_leave_no_unsupported_sentence(built_sample: Path, policy: str) -> None:
    question = "How often is the desiccant pack replaced?"
    result = cli("query", str(built_sample), question, "--json", "--set", f"query.unsupported={policy}")
    assert result.returncode == 0, result.stderr
    data = result.json()
    _assert_checked(data, data["sources"])
    assert all(s["supported"] for s in data["sentences"])
    if policy == "refuse" and data["answer"] == REFUSAL:
        assert data["sentences"] == [] and "refuse" in data["notice"]


def test_an_unknown_policy_is_a_config_error_naming_the_field(make_config: Callable[..., Path]) -> None:
    from tests.adversarial.helpers import assert_one_paragraph_error

    config = make_config(llm={"provider": "none"}, query={"unsupported": "ignore"})
    assert_one_paragraph_error(cli("query", str(config), "anything"), "query.unsupported")


@pytest.mark.slow
def test_http_and_openai_answers_carry_the_sentences(built_sample: Path) -> None:
    import httpx

    from indexer import Indexer
    from indexer.server import create_app
    from tests.support.live_server import live_server, sse_events

    question = "How often is the desiccant pack replaced?"
    with (
        live_server(create_app(Indexer.from_config(built_sample))) as url,
        httpx.Client(base_url=url, timeout=120) as http,
    ):
        body = http.post("/v1/query", json={"question": question}).json()
        _assert_checked(body, body["sources"])

        with http.stream("POST", "/v1/query", json={"question": question, "stream": True}) as response:
            events = [(name, json.loads(data)) for name, data in sse_events(response)]
        done = next(data for name, data in events if name == "done")
        sources = next(data for name, data in events if name == "sources")["sources"]
        _assert_checked(done, sources)

        model = http.get("/v1/models").json()["data"][0]["id"]
        chat = http.post(
            "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": question}]}
        ).json()
        _assert_checked({"answer": chat["choices"][0]["message"]["content"], **chat}, chat["sources"])


# -- query.answer_style -----------------------------------------------------------------------------


def test_extract_quotes_the_closest_passage_sentence_with_its_citation(embed: Embed) -> None:
    checked = extract("How often is the desiccant pack replaced?", SOURCES, embed)
    assert checked.answer is not None and checked.answer.endswith("[1]")
    quote = checked.answer.removesuffix(" [1]").strip("“”")
    assert quote in " ".join(MAINTENANCE.split())
    [sentence] = checked.sentences
    assert sentence.supported and sentence.cited_by == "system" and sentence.citations == [1]
    assert extract("anything", [], embed).answer is None


def test_extract_quotes_the_sentence_stating_the_fact_not_a_heading_question_or_restatement(
    embed: Embed,
) -> None:
    """Taken from the sample documents: the FAQ's question, the section's heading and a sentence
    that only restates the question all read closer to it than the sentence that answers."""
    radio = (
        "# Radio link\n\nWhich frequency does the European mast use?\n\n"
        "The mast and console talk to each other over a LoRa radio link.\n\n"
        "- **AS-868**, the European variant, uses the 868 MHz band.\n"
    )
    source = Source(rank=1, score=0.9, file="hardware.md", doc_id="hardware.md", text=radio)
    checked = extract("Which variant of the mast is made for Europe?", [source], embed)
    assert checked.answer == "“- **AS-868**, the European variant, uses the 868 MHz band.” [1]"
    # Asked for a value of a known form (a frequency), the quote is that value alone.
    checked = extract("Which radio frequency does the European mast use?", [source], embed)
    assert checked.answer == "“868 MHz” [1]" and checked.sentences[0].citations == [1]
    only_questions = Source(rank=1, score=0.9, file="faq.md", doc_id="faq.md", text="Is it open source?")
    assert extract("Is it open source?", [only_questions], embed).answer == "“Is it open source?” [1]"


def test_extract_reads_a_frequency_from_the_heading_above_the_task_not_from_other_headings(
    embed: Embed,
) -> None:
    """From the sample's maintenance schedule: each underlined heading alone reads close to "how
    often", and the shortest had been quoted ("ONCE A YEAR"); a heading is a label, not an answer."""
    schedule = (
        "EVERY THREE MONTHS\n------------------\n* Spin the anemometer cups by hand.\n\n"
        + MAINTENANCE
        + "\nONCE A YEAR\n-----------\n* Update the firmware on both the console and the mast.\n"
    )
    source = Source(rank=1, score=0.9, file="maintenance.txt", doc_id="maintenance.txt", text=schedule)
    checked = extract("How often should the desiccant be replaced?", [source], embed)
    assert checked.answer == "“EVERY SIX MONTHS” [1]"
    checked = extract("How often should the firmware be updated?", [source], embed)
    assert checked.answer == "“ONCE A YEAR” [1]"


def test_auto_keeps_a_supported_answer_and_quotes_the_passages_instead_of_an_unsupported_one(
    embed: Embed,
) -> None:
    question = "How often is the desiccant pack replaced?"
    auto = answer_checker(embed, question, style="auto")
    good = "Replace the desiccant pack every six months [1]."
    assert auto(good, SOURCES).answer == good and auto(good, SOURCES).notice is None
    fallback = auto("Replace the desiccant pack every 12 months.", SOURCES)
    assert fallback.answer == extract(question, SOURCES, embed).answer
    assert "answer_style: auto" in (fallback.notice or "")
    assert all(s.supported for s in fallback.sentences)


def test_auto_quotes_the_value_where_the_model_restated_the_question_without_it(embed: Embed) -> None:
    """SmolLM2's own answers on the sample: a supported sentence that mis-copies the value asked
    for, or leaves it out, gives way to the value quoted from the passages."""
    errors = (
        "code,area,description\nE-214,Sensors,Barometric pressure sensor did not respond on the I2C bus\n"
    )
    sources = [Source(rank=1, score=0.9, file="error_codes.csv", doc_id="error_codes.csv", text=errors)]
    question = "Which error code means the barometric pressure sensor did not respond on the I2C bus?"
    auto = answer_checker(embed, question, style="auto")
    wrong = auto("The barometric pressure sensor did not respond on the I2C bus.", sources)
    assert wrong.answer == "“E-214” [1]" and "“E-214”" in (wrong.notice or "")
    right = "Error E-214 means the barometric pressure sensor did not respond on the I2C bus [1]."
    assert auto(right, sources).answer == right and auto(right, sources).notice is None


@pytest.mark.slow
def test_extract_answers_without_any_model_through_the_cli(built_sample: Path) -> None:
    result = cli(
        "query",
        str(built_sample),
        "How often is the desiccant pack replaced?",
        "--json",
        "--set",
        "query.answer_style=extract",
        "--set",
        "llm.provider=none",
    )
    assert result.returncode == 0, result.stderr
    data = result.json()
    _assert_checked(data, data["sources"])
    [sentence] = data["sentences"]
    cited = data["sources"][sentence["citations"][0] - 1]
    assert data["answer"].split("” [")[0].strip("“") in " ".join(cited["text"].split())


@pytest.mark.slow
def test_smollm2_answers_all_cite_and_no_absent_number_goes_unflagged(
    built_sample: Path, smollm2_gguf: Path
) -> None:
    """The issue's targets on the sample questions, with the bundled SmolLM2: every answer cites at
    least one passage, and no sentence states a number absent from the sources without a flag.
    Two passages per question: reading the prompt is nearly all of SmolLM2's time here (its answers
    are a sentence or two), and two passages halve it; a number from a passage left out is absent
    from the sources, so it must be flagged all the same."""
    import re

    from indexer import Indexer
    from tests.conftest import sample_questions

    overrides = {"llm.model_path": str(smollm2_gguf), "llm.max_new_tokens": 96, "query.top_k": 2}
    ix = Indexer.from_config(built_sample, overrides)
    for item in sample_questions():
        answer = ix.query(item["question"])
        data = answer.to_dict()
        _assert_checked(data, data["sources"])
        if answer.sentences:
            assert answer.citations, item["id"]
        passages = " ".join(s.text for s in answer.sources)
        for sentence in answer.sentences:
            claim = re.sub(r"\[\d+(?:\s*,\s*\d+)*\]", "", sentence.text)
            absent = [n for n in re.findall(r"\d+", claim) if n not in passages]
            assert not absent or not sentence.supported, (item["id"], sentence.text)
