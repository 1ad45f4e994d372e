"""Issue 30, item 2: a file name whose bytes are not UTF-8 (``latin\\xe9\\xff.txt``, as a Latin-1
system or a zip file leaves it) no longer blocks every build. It is indexed under an escaped id
that is valid UTF-8 and maps back to exactly the file's bytes (``sources.id_to_name``); status,
queries and the next build all agree on that id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from indexer.ingestion.sources import id_to_name, name_to_id
from tests.adversarial.helpers import cli, small_config, write_docs

RAW_NAME = b"latin\xe9\xff.txt"
ESCAPED = "latin\\xe9\\xff.txt"


@pytest.mark.parametrize(
    "raw",
    [
        b"plain.txt",
        b"caf\xc3\xa9.txt",  # valid UTF-8: unchanged
        RAW_NAME,
        b"back\\slash.txt",
        b"latin\\xe9\\xff.txt",  # the escaped form of RAW_NAME, as a real (ASCII) name
        b"\\\\xff\xff\\",
        bytes(range(0x80, 0x100)),
    ],
)
def test_every_name_maps_to_a_utf8_id_and_back(raw: bytes) -> None:
    name = os.fsdecode(raw)
    doc_id = name_to_id(name)
    doc_id.encode("utf-8")  # storable in JSON, the manifest and Chroma
    assert os.fsencode(id_to_name(doc_id)) == raw
    if b"\\" not in raw and raw.decode("utf-8", errors="ignore").encode() == raw:
        assert doc_id == name  # ids of ordinary names are what they always were


def test_distinct_names_get_distinct_ids() -> None:
    names = [b"latin\xe9\xff.txt", b"latin\\xe9\\xff.txt", b"latin\\\\xe9\\xff.txt", b"latin\xe9\\xff.txt"]
    assert len({name_to_id(os.fsdecode(n)) for n in names}) == len(names)


def test_a_non_utf8_file_name_is_indexed_under_an_escaped_id(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs")
    with open(os.fsencode(docs) + b"/" + RAW_NAME, "wb") as fh:
        fh.write(b"The latin weather vane turns on a brass spindle greased each April.\n")
    os.mkdir(os.fsencode(docs) + b"/d\xe9j\xe0")
    with open(os.fsencode(docs) + b"/d\xe9j\xe0/vu.txt", "wb") as fh:
        fh.write(b"The folder with a Latin-1 name holds the tide gauge calibration log.\n")
    # An ASCII name that looks like the escaped id: a different document.
    (docs / ESCAPED).write_text("A decoy file whose name is the escaped id, about hailstones.\n")
    config = small_config(tmp_path / "cfg", docs)
    ids = {ESCAPED, "latin\\\\xe9\\\\xff.txt", "d\\xe9j\\xe0/vu.txt"}

    dry = cli("build", str(config), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert ids <= set(dry.json()["changes"]["added"])

    built = cli("build", str(config), "--json")
    assert built.returncode == 0, built.stderr
    summary = built.json()
    assert summary["documents"] == 6 and summary["skipped"] == []
    assert ids <= set(summary["changes"]["added"])
    assert os.fsencode(id_to_name(ESCAPED)) == RAW_NAME

    query = cli("query", str(config), "latin weather vane brass spindle", "--json")
    assert query.returncode == 0, query.stderr
    query.stdout.encode("utf-8")  # valid UTF-8 through and through
    sources = json.loads(query.stdout)["sources"]
    assert next(s for s in sources if "brass spindle" in s["text"])["file"] == ESCAPED
    text = cli("query", str(config), "tide gauge calibration log").stdout
    assert "d\\xe9j\\xe0/vu.txt" in text

    status = cli("status", str(config), "--json")
    assert status.returncode == 0, status.stderr
    status.stdout.encode("utf-8")
    assert status.json()["up_to_date"] and status.json()["unchanged"] == 6

    # No re-embedding loop: the unchanged re-run finds it unchanged.
    again = cli("build", str(config), "--json").json()
    assert again["unchanged"] == 6 and again["chunks_embedded"] == 0 and again["added"] == 0

    # Removed: its id leaves the index like any other.
    os.unlink(os.fsencode(docs) + b"/" + RAW_NAME)
    gone = cli("build", str(config), "--json").json()
    assert gone["changes"]["deleted"] == [ESCAPED] and gone["documents"] == 5
