"""A read and a write of the same index in one process (`serve --watch`: requests on worker
threads, the sync on its own): the read must not reopen the client that the write is using."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.adversarial.helpers import small_config, write_docs


def test_reads_in_a_loop_during_a_build_in_another_thread_leave_the_build_whole(tmp_path: Path) -> None:
    from indexer import Indexer

    docs = write_docs(tmp_path / "docs")
    indexer = Indexer.from_config(small_config(tmp_path / "cfg", docs))
    indexer.build()
    for n in range(40):  # enough chunks that the build writes while the reads run
        (docs / f"log-{n}.md").write_text(f"# Log {n}\n\nThe anchor chain was inspected on day {n}.\n")

    outcome: dict[str, object] = {}

    def build() -> None:
        try:
            outcome["summary"] = indexer.build()
        except Exception as exc:  # the failure this test is about: reported below, not lost
            outcome["error"] = exc

    builder = threading.Thread(target=build)
    builder.start()
    reads = 0
    while builder.is_alive():
        indexer.retrieve("desiccant pack", top_k=1)
        reads += 1
    builder.join()

    assert "error" not in outcome, outcome.get("error")
    assert reads > 1
    found = indexer.retrieve("anchor chain day 7", top_k=1, filters={"path": "log-7.md"})
    assert [source.file for source in found] == ["log-7.md"]
