"""The value a question asks for, found by its form in the passage: the sentence first, then the
lines of its paragraph, then the headings above it; nothing for questions that ask for prose."""

from __future__ import annotations

import pytest

from indexer.query.answer_span import answer_span, asked_value

CHANGELOG = (
    "## [2.5.0] - 2024-09-16\n\n### Added\n- MQTT publishing now supports TLS connections.\n\n"
    "## [2.4.0] - 2024-06-03\n\n### Added\n"
    "- Support for the PM2.5 air quality add-on module, connected through the\n"
    "  expansion port on the Hub-2 board.\n"
)
CATALOG = (
    '    {\n      "sku": "AUR-5120-B",\n      "name": "Rain gauge funnel",\n      "price": 19.0\n    },\n'
    '    {\n      "sku": "AUR-7731-X",\n      "name": "Wind vane assembly",\n      "price": 41.0\n    }\n'
)
SCHEDULE = (
    "EVERY THREE MONTHS\n------------------\n* Clean the solar panel with a soft cloth.\n\n"
    "EVERY SIX MONTHS\n----------------\n"
    "* Replace the silica gel desiccant pack inside the mast electronics\n  enclosure.\n"
)
ERRORS = (
    "code,area,severity,description,action\n"
    "E-214,Sensors,error,Barometric pressure sensor did not respond on the I2C bus,Replace the Hub-2 board\n"
)


def fold(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("question", "kind", "noun"),
    [
        ("How often is the desiccant replaced?", "frequency", "often"),
        ("How high above the ground is the shield mounted?", "quantity", "high"),
        ("Which radio frequency does the European mast use?", "quantity", "frequency"),
        ("When did the PostgreSQL 16 upgrade happen?", "date", "when"),
        ("Which error code means the sensor did not respond?", "code", "code"),
        ("Under which open-source license is the firmware released?", "code", "license"),
        ("Which firmware release added the PM2.5 module?", "code", "release"),
        ("What range of temperature offsets does the console accept?", "quantity", "range"),
    ],
)
def test_a_question_asking_for_a_value_names_its_form(question: str, kind: str, noun: str) -> None:
    asked = asked_value(question)
    assert asked is not None and (asked.kind, asked.noun) == (kind, noun)


@pytest.mark.parametrize(
    "question",
    [
        "What is a reed switch?",
        "Why does the wind speed stay at zero?",
        "How do I pair the mast with the console?",
        "What is connector J4 for?",  # it names its value: it asks about it, not for it
        "What does error E-214 mean?",
    ],
)
def test_a_question_asking_for_prose_or_about_a_value_it_names_asks_for_no_value(question: str) -> None:
    assert asked_value(question) is None


def span(question: str, passage: str, sentence: str) -> str | None:
    asked = asked_value(question)
    assert asked is not None
    return answer_span(asked, question, passage, fold(sentence))


def test_the_value_is_quoted_from_the_sentence_in_the_form_asked() -> None:
    sentence = "- **AS-868**, the European variant, uses the 868 MHz band."
    # "AS-868" is a code, not a frequency; the unit says which value answers.
    assert span("Which radio frequency does the European mast use?", sentence, sentence) == "868 MHz"
    sentence = "The radiation shield is level and about 1.5 meters above the ground."
    assert span("How high above the ground is the radiation shield?", sentence, sentence) == "1.5 meters"
    sentence = "The mast sends a status packet once every 15 minutes."
    assert span("How often does the mast send a heartbeat?", sentence, sentence) == "once every 15 minutes"


def test_a_value_the_question_states_is_not_its_answer() -> None:
    sentence = "Support for the PM2.5 module arrived in release 2.4.0 of the firmware."
    assert span("Which firmware release added the PM2.5 module?", sentence, sentence) == "2.4.0"
    assert (
        span(
            "Which release added the PM2.5 module?",
            "The PM2.5 module is sold apart.",
            "The PM2.5 module is sold apart.",
        )
        is None
    )


def test_a_release_is_read_from_the_heading_its_entry_sits_under() -> None:
    sentence = (
        "Support for the PM2.5 air quality add-on module, connected through the expansion port on the "
        "Hub-2 board."
    )
    # The entry names "Hub-2", a code but not a release; the heading two levels up names 2.4.0.
    assert span("Which firmware release added support for the PM2.5 module?", CHANGELOG, sentence) == "2.4.0"


def test_a_field_is_read_from_its_own_record_beside_the_matched_line() -> None:
    question = "What is the SKU of the wind vane assembly?"
    assert span(question, CATALOG, '"name": "Wind vane assembly",') == "AUR-7731-X"
    assert span(question, CATALOG, '"name": "Rain gauge funnel",') == "AUR-5120-B"


def test_a_frequency_is_read_from_the_schedule_heading_above_the_task() -> None:
    question = "How often should the silica gel desiccant pack be replaced?"
    assert (
        span(
            question,
            SCHEDULE,
            "* Replace the silica gel desiccant pack inside the mast electronics enclosure.",
        )
        == "EVERY SIX MONTHS"
    )
    assert span(question, SCHEDULE, "* Clean the solar panel with a soft cloth.") == "EVERY THREE MONTHS"


def test_of_two_codes_in_a_row_the_one_nearest_the_question_words_answers() -> None:
    row = ERRORS.splitlines()[1]
    assert (
        span("Which error code means the barometric pressure sensor did not respond?", ERRORS, row) == "E-214"
    )


def test_a_passage_without_the_value_asked_for_gives_no_span() -> None:
    sentence = "Replace the silica gel desiccant pack inside the mast electronics enclosure."
    assert span("How often should the desiccant pack be replaced?", sentence, sentence) is None
    assert (
        span(
            "Which error code means the sensor failed?",
            "The sensor failed twice.",
            "The sensor failed twice.",
        )
        is None
    )


def test_a_date_is_read_from_the_release_heading() -> None:
    sentence = "- MQTT publishing now supports TLS connections."
    assert span("When did firmware version 2.5.0 come out?", CHANGELOG, sentence) == "2024-09-16"
    assert (
        span(
            "When was the PostgreSQL upgrade?",
            "It happened on Saturday 20 April 2024.",
            "It happened on Saturday 20 April 2024.",
        )
        == "20 April 2024"
    )
